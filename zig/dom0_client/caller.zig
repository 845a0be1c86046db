//! The calling side of the data vchan for the native qrexec-client, as src/call/caller.ts's
//! `runCaller` sets it up from JavaScript: the vchan server, a pump stream of kind data_client
//! over our fds 0 and 1 (remote stderr to our fd 2), and the stream's one final event.
const std = @import("std");
const linux = std.os.linux;

const diag = @import("../diag.zig");
const protocol = @import("../protocol.zig");
const pump_mod = @import("../pump/pump.zig");
const events = pump_mod.events;
const Vchan = @import("../vchan/vchan.zig").Vchan;
const Call = @import("command_line.zig").Call;
const Allocated = @import("daemon.zig").Allocated;
const Settings = @import("settings.zig").Settings;

/// DEFAULT_DATA_RING_BYTES (src/agent/peer-profile.ts): the minimum ring each way.
const data_ring_bytes: u32 = 131072;

pub const Outcome = union(enum) {
    /// The remote EXIT_CODE; null when the vchan closed before one came.
    remote: ?i32,
    /// Why the call failed, as the Bun CLI words it.
    failed: []const u8,
};

var pump: pump_mod.Pump = .{};
var message_buffer: [512]u8 = undefined;

pub fn run(call: Call, allocated: Allocated, settings: *const Settings) Outcome {
    var label_buffer: [64]u8 = undefined;
    const label = std.fmt.bufPrint(&label_buffer, "vchan server 0<-{d}:{d}", .{
        @as(i32, @bitCast(allocated.domain)), @as(i32, @bitCast(allocated.port)),
    }) catch unreachable;
    const id = start(call, allocated, settings) catch return failed("{s}", .{diag.message()});
    return wait(id, label);
}

fn start(call: Call, allocated: Allocated, settings: *const Settings) diag.Fail!u32 {
    const vchan = std.heap.c_allocator.create(Vchan) catch
        return diag.fail(.NOMEM, "out of memory", .{});
    vchan.server_init(settings.backend, .{
        .dir = settings.dir,
        .local_domain = 0,
        .remote_domain = @bitCast(allocated.domain),
        .port = @bitCast(allocated.port),
        .read_min = data_ring_bytes,
        .write_min = data_ring_bytes,
        .pages_max = settings.pages_max,
        .spin_ns = settings.spin_ns,
    }) catch {
        std.heap.c_allocator.destroy(vchan);
        return error.Fail;
    };
    try pump.start();
    const id = try pump.attach(vchan, .{
        .kind = .data_client,
        .own_version = protocol.version_max,
        .send_first = true,
        .connect_timeout_ms = call.connect_timeout_ms,
        .flags = .{ .filter_stdout = call.filter_stdout, .filter_stderr = call.filter_stderr },
    });
    if (call.prefix) |prefix| try pump.with_stream(id, pump_mod.Pump.set_prefix, .{prefix});
    // Remote output goes to our fd 1, local input comes from our fd 0.
    try pump.with_stream(id, pump_mod.Pump.set_stdio, .{ 1, 0, -1, false });
    return id;
}

/// Waits for the stream's `done` or `failed` record.
fn wait(id: u32, label: []const u8) Outcome {
    var records: [4096]u8 align(4) = undefined;
    while (true) {
        const doorbell = pump.queue.doorbell_read;
        var poll_fd = [_]linux.pollfd{.{ .fd = doorbell, .events = linux.POLL.IN, .revents = 0 }};
        _ = linux.poll(&poll_fd, 1, -1);
        const len = pump.drain_events(&records);
        var offset: usize = 0;
        while (offset + events.record_header_bytes <= len) {
            const record = records[offset..len];
            const stream = std.mem.readInt(u32, record[0..4], .little);
            const kind = std.mem.readInt(u32, record[4..8], .little);
            const value = std.mem.readInt(i32, record[8..12], .little);
            const payload_len = std.mem.readInt(u32, record[12..16], .little);
            const payload = record[16..][0..payload_len];
            offset += events.record_header_bytes + std.mem.alignForward(usize, payload_len, 4);
            if (stream != id) continue;
            if (kind == @intFromEnum(events.Kind.done)) {
                return .{ .remote = if (value == -1) null else value };
            }
            if (kind == @intFromEnum(events.Kind.failed)) {
                return failed("{s} (client): {s}", .{ label, payload });
            }
        }
    }
}

fn failed(comptime fmt: []const u8, args: anytype) Outcome {
    const text = std.fmt.bufPrint(&message_buffer, fmt, args) catch message_buffer[0..];
    return .{ .failed = text };
}

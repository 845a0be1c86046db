//! The pump end to end inside one process: both ends of a call attached to one pump, real shm
//! vchans, real socketpairs and pipes standing in for the service and the caller's terminal.
const std = @import("std");
const linux = std.os.linux;
const testing = std.testing;

const pump_mod = @import("pump.zig");
const Pump = pump_mod.Pump;
const events = pump_mod.events;
const shm = @import("../vchan/shm.zig");
const protocol = @import("../protocol.zig");

const Event = struct { stream: u32, kind: events.Kind, value: i32, payload: []const u8 };

const Harness = struct {
    pump: *Pump,
    tmp: testing.TmpDir,
    dir_buffer: [std.fs.max_path_bytes]u8 = undefined,
    dir: []const u8 = "",
    buffer: [1 << 17]u8 = undefined,
    collected: std.ArrayListUnmanaged(Event) = .{},
    arena: std.heap.ArenaAllocator,

    fn init() !*Harness {
        const harness = try testing.allocator.create(Harness);
        harness.* = .{ .pump = try testing.allocator.create(Pump), .tmp = testing.tmpDir(.{}), .arena = std.heap.ArenaAllocator.init(testing.allocator) };
        harness.pump.* = .{};
        harness.dir = try harness.tmp.dir.realpath(".", &harness.dir_buffer);
        try harness.pump.start();
        return harness;
    }

    fn deinit(self: *Harness) void {
        self.pump.stop();
        self.arena.deinit();
        self.tmp.cleanup();
        testing.allocator.destroy(self.pump);
        testing.allocator.destroy(self);
    }

    fn vchan(self: *Harness, server: bool, port: i32, ring_bytes: u32) !*shm.Vchan {
        const v = try std.heap.c_allocator.create(shm.Vchan);
        if (server) {
            try v.server_init(.{ .dir = self.dir, .local_domain = 3, .remote_domain = 4, .port = port, .read_min = ring_bytes, .write_min = ring_bytes, .spin_ns = 0 });
        } else {
            try v.client_init(.{ .dir = self.dir, .local_domain = 4, .remote_domain = 3, .port = port, .spin_ns = 0 });
        }
        return v;
    }

    /// Collects events until `count` of `kind` arrived (or fails after 5 s).
    fn wait_for(self: *Harness, kind: events.Kind, count: usize) !void {
        const deadline = std.time.milliTimestamp() + 5000;
        while (self.count_of(kind) < count) {
            if (std.time.milliTimestamp() > deadline) return error.Timeout;
            var poll_fd = [_]linux.pollfd{.{ .fd = self.pump.queue.doorbell_read, .events = linux.POLL.IN, .revents = 0 }};
            _ = linux.poll(&poll_fd, 1, 50);
            const got = self.pump.drain_events(&self.buffer);
            var offset: usize = 0;
            while (offset < got) {
                const len = std.mem.readInt(u32, self.buffer[offset + 12 ..][0..4], .little);
                try self.collected.append(self.arena.allocator(), .{
                    .stream = std.mem.readInt(u32, self.buffer[offset..][0..4], .little),
                    .kind = @enumFromInt(std.mem.readInt(u32, self.buffer[offset + 4 ..][0..4], .little)),
                    .value = std.mem.readInt(i32, self.buffer[offset + 8 ..][0..4], .little),
                    .payload = try self.arena.allocator().dupe(u8, self.buffer[offset + 16 ..][0..len]),
                });
                offset += 16 + std.mem.alignForward(usize, len, 4);
            }
        }
    }

    fn count_of(self: *Harness, kind: events.Kind) usize {
        var count: usize = 0;
        for (self.collected.items) |event| count += @intFromBool(event.kind == kind);
        return count;
    }

    fn find(self: *Harness, stream: u32, kind: events.Kind) ?Event {
        for (self.collected.items) |event| if (event.stream == stream and event.kind == kind) return event;
        return null;
    }
};

fn pipe() ![2]i32 {
    var fds: [2]i32 = undefined;
    if (linux.E.init(linux.pipe2(&fds, .{ .CLOEXEC = true })) != .SUCCESS) return error.Pipe;
    return fds;
}

fn write_all(fd: i32, bytes: []const u8) void {
    var offset: usize = 0;
    while (offset < bytes.len) offset += linux.write(fd, bytes[offset..].ptr, bytes.len - offset);
}

fn read_to_end(fd: i32, out: []u8) !usize {
    var total: usize = 0;
    while (true) {
        const rc = linux.read(fd, out[total..].ptr, out.len - total);
        if (linux.E.init(rc) != .SUCCESS) return error.Read;
        if (rc == 0) return total;
        total += rc;
    }
}

/// A caller (client side, vchan server) and a service (vchan client) attached to one pump.
const Call = struct { client: u32, service: u32, child: [3]i32, caller_out: i32, caller_in: i32 };

fn start_call(harness: *Harness, port: i32, ring_bytes: u32) !Call {
    const pump = harness.pump;
    const client = try pump.attach(try harness.vchan(true, port, ring_bytes), .{ .kind = .data_client, .own_version = 4, .send_first = true, .connect_timeout_ms = 5000 });
    const service = try pump.attach(try harness.vchan(false, port, 0), .{ .kind = .data_service, .own_version = 4, .send_first = true, .connect_timeout_ms = 5000 });
    const output = try pipe();
    const input = try pipe();
    try pump.with_stream(client, Pump.set_stdio, .{ output[1], input[0], -1, false });
    const child = try pump.with_stream(service, Pump.make_service_stdio, .{});
    return .{ .client = client, .service = service, .child = child, .caller_out = output[0], .caller_in = input[1] };
}

test "pump: test.Add — stdin to the service, stdout back, exit status last" {
    const harness = try Harness.init();
    defer harness.deinit();
    const call = try start_call(harness, 600, 65536);
    try harness.wait_for(.connected, 2);
    try testing.expectEqual(@as(i32, 4), harness.find(call.client, .connected).?.value);

    write_all(call.caller_in, "11 22\n");
    _ = linux.close(call.caller_in);
    // The "service": reads its stdin to EOF, answers, exits 0.
    var request: [64]u8 = undefined;
    const got = try read_to_end(call.child[0], &request);
    try testing.expectEqualStrings("11 22\n", request[0..got]);
    write_all(call.child[1], "33\n");
    for (call.child) |fd| _ = linux.close(fd);
    try harness.pump.with_stream(call.service, Pump.local_exit, .{0});

    try harness.wait_for(.done, 2);
    try testing.expectEqual(@as(i32, 0), harness.find(call.service, .done).?.value);
    try testing.expectEqual(@as(i32, 0), harness.find(call.client, .done).?.value);
    var answer: [64]u8 = undefined;
    const answered = try read_to_end(call.caller_out, &answer);
    try testing.expectEqualStrings("33\n", answer[0..answered]);
    try harness.pump.close(call.client);
    try harness.pump.close(call.service);
}

test "pump: a large transfer through a small ring, and the remote exit status reaches the caller" {
    const harness = try Harness.init();
    defer harness.deinit();
    const call = try start_call(harness, 601, 1024);
    try harness.wait_for(.connected, 2);
    _ = linux.close(call.caller_in);
    // The service writes 3 MiB and exits 42; the caller's output must get every byte in order.
    const total = 3 * 1024 * 1024;
    const writer = try std.Thread.spawn(.{}, struct {
        fn run(fd: i32) void {
            var block: [4096]u8 = undefined;
            var sent: usize = 0;
            while (sent < total) : (sent += block.len) {
                for (&block, 0..) |*b, i| b.* = @truncate((sent + i) *% 31);
                write_all(fd, &block);
            }
            _ = linux.close(fd);
        }
    }.run, .{call.child[1]});
    _ = linux.close(call.child[0]);
    _ = linux.close(call.child[2]);
    var received: usize = 0;
    var chunk: [8192]u8 = undefined;
    while (true) {
        const rc = linux.read(call.caller_out, &chunk, chunk.len);
        if (rc == 0) break;
        for (chunk[0..rc], 0..) |b, i| try testing.expectEqual(@as(u8, @truncate((received + i) *% 31)), b);
        received += rc;
    }
    writer.join();
    try testing.expectEqual(@as(usize, total), received);
    try harness.pump.with_stream(call.service, Pump.local_exit, .{42});
    try harness.wait_for(.done, 2);
    try testing.expectEqual(@as(i32, 42), harness.find(call.client, .done).?.value);
}

test "pump: a service that cannot start sends both EOFs and its exit code" {
    const harness = try Harness.init();
    defer harness.deinit();
    const call = try start_call(harness, 602, 65536);
    try harness.wait_for(.connected, 2);
    for (call.child) |fd| _ = linux.close(fd);
    _ = linux.close(call.caller_in);
    try harness.pump.with_stream(call.service, Pump.finish_with, .{ 127, true });
    try harness.wait_for(.done, 2);
    try testing.expectEqual(@as(i32, 127), harness.find(call.client, .done).?.value);
}

test "pump: control channels negotiate the lower version and carry whole messages" {
    const harness = try Harness.init();
    defer harness.deinit();
    const pump = harness.pump;
    const agent = try pump.attach(try harness.vchan(true, 512, 4096), .{ .kind = .control, .own_version = 4, .send_first = true, .connect_timeout_ms = 5000 });
    const daemon = try pump.attach(try harness.vchan(false, 512, 0), .{ .kind = .control, .own_version = 3, .send_first = false, .connect_timeout_ms = 5000 });
    try harness.wait_for(.connected, 2);
    try testing.expectEqual(@as(i32, 3), harness.find(agent, .connected).?.value);
    try testing.expectEqual(@as(i32, 3), harness.find(daemon, .connected).?.value);

    try pump.with_stream(daemon, Pump.send_message, .{ @intFromEnum(protocol.MsgType.exec_cmdline), "\x04\x00\x00\x00\x01\x02\x00\x00user:QUBESRPC test.Add+ work\x00" });
    try harness.wait_for(.message, 1);
    const message = harness.find(agent, .message).?;
    try testing.expectEqual(@as(i32, 0x200), message.value);
    try testing.expectStringEndsWith(message.payload, "test.Add+ work\x00");
    // A message that can never fit the peer's ring is refused up front.
    var huge: [5000]u8 = undefined;
    try testing.expectError(error.Fail, pump.with_stream(daemon, Pump.send_message, .{ 0x200, &huge }));
    // The agent leaving is reported to the daemon as a failure of the channel.
    try pump.close(agent);
    try harness.wait_for(.failed, 1);
    try testing.expectEqual(-@as(i32, @intFromEnum(linux.E.PIPE)), harness.find(daemon, .failed).?.value);
}

test "pump: a vchan whose peer never comes times out" {
    const harness = try Harness.init();
    defer harness.deinit();
    const lonely = try harness.pump.attach(try harness.vchan(true, 700, 1024), .{ .kind = .data_client, .own_version = 4, .send_first = true, .connect_timeout_ms = 100 });
    try harness.wait_for(.failed, 1);
    const event = harness.find(lonely, .failed).?;
    try testing.expectEqual(-@as(i32, @intFromEnum(linux.E.TIMEDOUT)), event.value);
}

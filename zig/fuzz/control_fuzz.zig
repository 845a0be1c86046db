//! Harness `control`: the control-channel message decoder (zig/pump/control.zig) reading a
//! hostile byte stream through a real vchan, cut into arbitrary pieces. Properties: every
//! message it returns re-encodes to exactly the next bytes of the stream; it returns a message
//! only once all of it arrived and never one longer than the limit (it refuses that header);
//! nothing is lost or invented, whatever the pieces.
const std = @import("std");
const protocol = @import("../protocol.zig");
const Control = @import("../pump/control.zig").Control;
const pair_mod = @import("pair.zig");
const Input = @import("input.zig").Input;
const check = @import("check.zig");

var shared: ?pair_mod.Pair = null;

pub fn run(bytes: []const u8) void {
    const pair = shared orelse blk: {
        shared = pair_mod.connect(1024, 2048);
        break :blk shared.?;
    };
    pair_mod.reset(pair, 0);
    var input = Input.init(bytes);
    const small = input.int(u8) & 1 == 1;
    const limit: u32 = if (small) input.int(u16) % 512 else protocol.control_body_bytes_max;
    const cuts = input.int(u32);
    const stream = input.rest();

    var control = Control{ .vchan = pair.server, .allocator = std.heap.c_allocator };
    defer control.deinit();
    var decoded = std.ArrayList(u8).init(std.heap.c_allocator);
    defer decoded.deinit();
    defer discard(pair.server);
    var sent: usize = 0;
    var round: u5 = 0;
    var refused = false;
    while (!refused) : (round +%= 1) {
        // Piece sizes from the input's cut pattern; the ring's space bounds each write.
        const piece = 1 + ((cuts >> round) & 0xff);
        const wrote = pair.client.write(stream[sent..@min(stream.len, sent + piece)]) catch |err| {
            std.debug.panic("fuzz: honest write failed: {s}", .{@errorName(err)});
        };
        sent += wrote;
        refused = drain(&control, limit, &decoded);
        // Once all is sent, one drain took every whole message (a partial one stays).
        if (sent == stream.len) break;
    }
    expect_reference(stream, decoded.items, limit, refused);
}

/// Empties the ring of what the last input left in it (a partial or refused message).
fn discard(vchan: *pair_mod.Vchan) void {
    var buffer: [4096]u8 = undefined;
    while ((vchan.read(&buffer) catch 0) > 0) {}
}

/// Receives every complete message; true when the decoder refused a header.
fn drain(control: *Control, limit: u32, decoded: *std.ArrayList(u8)) bool {
    while (true) {
        const message = control.receive(limit) catch |err| switch (err) {
            error.MessageTooLarge => return true,
            else => std.debug.panic("fuzz: receive failed: {s}", .{@errorName(err)}),
        } orelse return false;
        check.that(message.body.len <= limit, "body of {d} over the limit", .{message.body.len});
        const len: u32 = @intCast(message.body.len);
        const header = (protocol.Header{ .type = message.type, .len = len }).encode();
        decoded.appendSlice(&header) catch @panic("out of memory");
        decoded.appendSlice(message.body) catch @panic("out of memory");
    }
}

/// A plain left-to-right reading of `stream` must agree with what the decoder returned.
fn expect_reference(stream: []const u8, decoded: []const u8, limit: u32, refused: bool) void {
    var at: usize = 0;
    while (stream.len - at >= protocol.header_bytes) {
        const len = std.mem.readInt(u32, stream[at + 4 ..][0..4], .little);
        if (len > limit) {
            check.that(
                refused and decoded.len == at,
                "length {d} over {d} not refused at {d}",
                .{ len, limit, at },
            );
            return;
        }
        if (stream.len - at - protocol.header_bytes < len) break;
        at += protocol.header_bytes + len;
    }
    check.that(!refused, "refused a stream the reference accepts", .{});
    check.that(decoded.len == at, "decoded {d} bytes, reference {d}", .{ decoded.len, at });
    check.that(
        std.mem.eql(u8, decoded, stream[0..at]),
        "messages do not re-encode to the stream",
        .{},
    );
}

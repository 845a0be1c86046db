//! The client side of a VM's daemon socket (qrexec-protocol.md §7.2), as
//! src/daemon/daemon-client.ts does it: HELLO both ways (the daemon first), then EXEC_CMDLINE
//! with port 0, answered with the target's domain id and the data vchan's port. Blocking I/O:
//! the call has nothing else to do meanwhile. Replies are untrusted and checked before use.
const std = @import("std");
const linux = std.os.linux;
const protocol = @import("../protocol.zig");

pub const Allocated = struct { domain: u32, port: u32 };

/// Why the exchange failed, in the words the Bun CLI uses; `text` is valid until the next call.
pub const Failure = struct {
    buffer: [200]u8 = undefined,
    len: usize = 0,

    pub fn text(self: *const Failure) []const u8 {
        return self.buffer[0..self.len];
    }

    fn set(self: *Failure, comptime fmt: []const u8, args: anytype) error{Failed} {
        const written = std.fmt.bufPrint(&self.buffer, fmt, args) catch self.buffer[0..];
        self.len = written.len;
        return error.Failed;
    }
};

const exec_params_bytes: u32 = 8;

/// The daemon's HELLO, then ours. Any failure is left to the Bun CLI (nothing was asked yet).
pub fn handshake(socket: i32) error{Failed}!void {
    var failure = Failure{};
    const message = (try read_message(socket, 4, &failure)) orelse return error.Failed;
    if (message.header.type != @intFromEnum(protocol.MsgType.hello)) return error.Failed;
    if (message.header.len != 4) return error.Failed;
    const version = std.mem.readInt(u32, message.payload[0..4], .little);
    if (version < protocol.client_protocol_version) return error.Failed;
    const hello = protocol.encode_hello(protocol.client_protocol_version);
    write_all(socket, &hello) catch return error.Failed;
}

/// Sends EXEC_CMDLINE for `command` (port 0) and reads the allocation.
pub fn request_exec(socket: i32, command: []const u8, failure: *Failure) error{Failed}!Allocated {
    const body_len = exec_params_bytes + command.len + 1;
    if (body_len > std.math.maxInt(u32)) return failure.set("the command is too long", .{});
    var head: [16]u8 = std.mem.zeroes([16]u8);
    const header = protocol.Header{
        .type = @intFromEnum(protocol.MsgType.exec_cmdline),
        .len = @intCast(body_len),
    };
    head[0..8].* = header.encode();
    // exec_params {connect_domain 0, connect_port 0} are the zeroes after the header.
    // A write that fails is not the story: the daemon closed, which the read below reports (the
    // Bun CLI's Connection drops such writes too).
    for ([_][]const u8{ &head, command, &.{0} }) |part| write_all(socket, part) catch break;
    const reply = (try read_message(socket, exec_params_bytes, failure)) orelse return failure.set(
        "daemon closed the connection without allocating a port " ++
            "(it refused the request; its log says why)",
        .{},
    );
    const expected = @intFromEnum(protocol.MsgType.exec_cmdline);
    if (reply.header.type != expected or reply.header.len != exec_params_bytes) {
        const fmt = "unexpected daemon reply type 0x{x} len {d}";
        return failure.set(fmt, .{ reply.header.type, reply.header.len });
    }
    return .{
        .domain = std.mem.readInt(u32, reply.payload[0..4], .little),
        .port = std.mem.readInt(u32, reply.payload[4..8], .little),
    };
}

const Message = struct { header: protocol.Header, payload: [exec_params_bytes]u8 };

/// One message of at most `payload_max` (<= 8) bytes; null at EOF before a header.
fn read_message(socket: i32, payload_max: u32, failure: *Failure) error{Failed}!?Message {
    std.debug.assert(payload_max <= exec_params_bytes);
    var head: [8]u8 = undefined;
    if (!(try read_exact(socket, &head, failure))) return null;
    var message = Message{ .header = protocol.Header.decode(head), .payload = undefined };
    const len = message.header.len;
    if (len > payload_max) {
        const fmt = "message type 0x{x} announces {d} bytes, limit {d}";
        return failure.set(fmt, .{ message.header.type, len, payload_max });
    }
    if (!(try read_exact(socket, message.payload[0..len], failure))) {
        return failure.set("peer closed after the header of a {d}-byte message", .{len});
    }
    return message;
}

/// False at EOF before all of `out` arrived.
fn read_exact(socket: i32, out: []u8, failure: *Failure) error{Failed}!bool {
    var got: usize = 0;
    while (got < out.len) {
        const rc = linux.read(socket, out[got..].ptr, out.len - got);
        switch (linux.E.init(rc)) {
            .SUCCESS => if (rc == 0) return false else {
                got += rc;
            },
            // A daemon that closes with our request unread resets the connection: it closed.
            .CONNRESET => return false,
            .INTR => {},
            else => |errno| return failure.set("read: {s}", .{@tagName(errno)}),
        }
    }
    return true;
}

fn write_all(socket: i32, data: []const u8) error{ BrokenPipe, WriteFailed }!void {
    var done: usize = 0;
    while (done < data.len) {
        const left = data[done..];
        const rc = linux.sendto(socket, left.ptr, left.len, linux.MSG.NOSIGNAL, null, 0);
        switch (linux.E.init(rc)) {
            .SUCCESS => done += rc,
            .INTR => {},
            .PIPE => return error.BrokenPipe,
            else => return error.WriteFailed,
        }
    }
}

test "daemon: an exchange with a daemon that allocates a port" {
    var pair: [2]i32 = undefined;
    const made = linux.socketpair(linux.AF.UNIX, linux.SOCK.STREAM, 0, &pair);
    try std.testing.expectEqual(@as(usize, 0), made);
    defer for (pair) |fd| {
        _ = linux.close(fd);
    };
    // The daemon's side, written ahead: its HELLO (v3) and the reply {domain 3, port 513}.
    const daemon_bytes = [_]u8{ 0, 3, 0, 0, 4, 0, 0, 0, 3, 0, 0, 0 } ++
        [_]u8{ 0, 2, 0, 0, 8, 0, 0, 0, 3, 0, 0, 0, 1, 2, 0, 0 };
    try write_all(pair[1], &daemon_bytes);
    try handshake(pair[0]);
    var failure = Failure{};
    const allocated = try request_exec(pair[0], "user:ls", &failure);
    try std.testing.expectEqual(Allocated{ .domain = 3, .port = 513 }, allocated);
    var sent: [12 + 16 + 8]u8 = undefined;
    try std.testing.expect(try read_exact(pair[1], &sent, &failure));
    try std.testing.expectEqualSlices(u8, &.{ 0, 3, 0, 0, 4, 0, 0, 0, 3, 0, 0, 0 }, sent[0..12]);
    try std.testing.expectEqualSlices(u8, &.{ 0, 2, 0, 0, 16, 0, 0, 0 }, sent[12..20]);
    try std.testing.expectEqualStrings("user:ls\x00", sent[28..36]);
}

test "daemon: a refusal and a malformed reply are described as the Bun CLI does" {
    var pair: [2]i32 = undefined;
    const made = linux.socketpair(linux.AF.UNIX, linux.SOCK.STREAM, 0, &pair);
    try std.testing.expectEqual(@as(usize, 0), made);
    defer _ = linux.close(pair[0]);
    try write_all(pair[1], &[_]u8{ 0, 2, 0, 0, 9, 0, 0, 0 });
    var failure = Failure{};
    try std.testing.expectError(error.Failed, request_exec(pair[0], "x", &failure));
    const expected = "message type 0x200 announces 9 bytes, limit 8";
    try std.testing.expectEqualStrings(expected, failure.text());
    _ = linux.close(pair[1]);
    try std.testing.expectError(error.Failed, request_exec(pair[0], "x", &failure));
    try std.testing.expectStringStartsWith(failure.text(), "daemon closed the connection without");
}

//! Failure reporting. Every fallible function in the library returns `Fail!T`; before it does,
//! it records an errno (what crosses the C ABI as `-errno`) and a message for humans in
//! thread-local storage, which `qrx_last_error` hands to TypeScript.
const std = @import("std");
const linux = std.os.linux;

pub const Fail = error{Fail};

threadlocal var errno_last: i32 = 0;
threadlocal var message_buffer: [384]u8 = undefined;
threadlocal var message_len: usize = 0;

pub fn fail(code: linux.E, comptime fmt: []const u8, args: anytype) Fail {
    errno_last = @intCast(@intFromEnum(code));
    const written = std.fmt.bufPrint(&message_buffer, fmt, args) catch blk: {
        const ellipsis = "...";
        @memcpy(message_buffer[message_buffer.len - ellipsis.len ..], ellipsis);
        break :blk message_buffer[0..];
    };
    message_len = written.len;
    return error.Fail;
}

/// Prefixes the recorded message with context from a caller further up.
pub fn context(comptime fmt: []const u8, args: anytype) void {
    var previous: [384]u8 = undefined;
    const old = previous[0..message_len];
    @memcpy(old, message_buffer[0..message_len]);
    var stream = std.io.fixedBufferStream(&message_buffer);
    stream.writer().print(fmt ++ ": {s}", args ++ .{old}) catch {};
    message_len = stream.pos;
}

pub fn errno() i32 {
    return errno_last;
}

pub fn message() []const u8 {
    return message_buffer[0..message_len];
}

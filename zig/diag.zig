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
    record(code, fmt, args);
    return error.Fail;
}

/// `fail` for a caller whose own error is not `Fail`: it records the errno and message only.
pub fn record(code: linux.E, comptime fmt: []const u8, args: anytype) void {
    errno_last = @intCast(@intFromEnum(code));
    const written = std.fmt.bufPrint(&message_buffer, fmt, args) catch blk: {
        const ellipsis = "...";
        @memcpy(message_buffer[message_buffer.len - ellipsis.len ..], ellipsis);
        break :blk message_buffer[0..];
    };
    message_len = written.len;
}

/// Prefixes the recorded message with context from a caller further up.
pub fn context(comptime fmt: []const u8, args: anytype) void {
    var previous: [384]u8 = undefined;
    const old = previous[0..message_len];
    @memcpy(old, message_buffer[0..message_len]);
    var stream = std.io.fixedBufferStream(&message_buffer);
    // A message longer than the buffer is cut there: the start says the most.
    stream.writer().print(fmt ++ ": {s}", args ++ .{old}) catch {};
    message_len = stream.pos;
}

pub fn errno() i32 {
    return errno_last;
}

pub fn message() []const u8 {
    return message_buffer[0..message_len];
}

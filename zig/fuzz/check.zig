//! A failed property stops the process loudly, so that a fuzzer records the input as a crash.
const std = @import("std");

pub fn that(ok: bool, comptime fmt: []const u8, args: anytype) void {
    if (!ok) std.debug.panic("fuzz property violated: " ++ fmt, args);
}

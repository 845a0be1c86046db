//! A failed property stops the process loudly, so that a fuzzer records the input as a crash.
//! It aborts without a stack trace: reading the debug info for one takes long enough that AFL++
//! would file the input as a hang. The message names the property; replay it for the rest.
const std = @import("std");

pub fn that(ok: bool, comptime fmt: []const u8, args: anytype) void {
    if (ok) return;
    std.debug.print("fuzz property violated: " ++ fmt ++ "\n", args);
    std.process.abort();
}

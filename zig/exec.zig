//! Replacing this process with a program, as upstream's `qrexec-client -d dom0` does with the
//! service (qrexec-protocol.md §2.4): the service then *is* the client process, so what is done
//! to the client (SIGSTOP, SIGTERM, waiting for its pid) is done to the service. Bun cannot
//! exec, hence this.
const std = @import("std");
const linux = std.os.linux;
const assert = std.debug.assert;

const sys = @import("sys.zig");

/// More arguments or variables than this is a caller bug, not a command line.
pub const strings_max: u32 = 1 << 16;

/// Execs `path` with `argc` arguments and `envc` variables, each list packed as NUL-terminated
/// strings. Only returns on failure, with the errno (INVAL: the lists do not match the counts).
/// The signal state is made a service's (§5.5: nothing blocked, SIGPIPE and SIGCHLD default) and
/// fds 0-2 blocking; other fds are left as they are (ours are close-on-exec).
pub fn exec(
    path: [*:0]const u8,
    argv_strings: []const u8,
    argc: u32,
    env_strings: []const u8,
    envc: u32,
) linux.E {
    const allocator = std.heap.c_allocator;
    const argv = pointers(allocator, argv_strings, argc) catch |err| return errno_of(err);
    defer allocator.free(argv);
    const envp = pointers(allocator, env_strings, envc) catch |err| return errno_of(err);
    defer allocator.free(envp);
    prepare_process();
    return sys.errno_of(linux.execve(path, argv.ptr, envp.ptr));
}

fn errno_of(err: error{ Invalid, OutOfMemory }) linux.E {
    return switch (err) {
        error.Invalid => .INVAL,
        error.OutOfMemory => .NOMEM,
    };
}

/// The `count` strings in `strings` as a null-terminated pointer list (they point into `strings`).
pub const PointerList = [:null]?[*:0]const u8;

pub fn pointers(
    allocator: std.mem.Allocator,
    strings: []const u8,
    count: u32,
) error{ Invalid, OutOfMemory }!PointerList {
    if (count > strings_max) return error.Invalid;
    const list = try allocator.allocSentinel(?[*:0]const u8, count, null);
    errdefer allocator.free(list);
    var offset: usize = 0;
    for (list) |*slot| {
        const end = std.mem.indexOfScalarPos(u8, strings, offset, 0) orelse return error.Invalid;
        slot.* = strings[offset..end :0].ptr;
        offset = end + 1;
    }
    if (offset != strings.len) return error.Invalid;
    assert(list[count] == null);
    return list;
}

fn prepare_process() void {
    const empty = linux.empty_sigset;
    _ = linux.sigprocmask(linux.SIG.SETMASK, &empty, null);
    const default = linux.Sigaction{
        .handler = .{ .handler = linux.SIG.DFL },
        .mask = empty,
        .flags = 0,
    };
    for ([_]u6{ linux.SIG.PIPE, linux.SIG.CHLD }) |signal| {
        _ = linux.sigaction(signal, &default, null);
    }
    // Bun may have made its stdio non-blocking; a service reading or writing it expects not.
    for ([_]i32{ 0, 1, 2 }) |descriptor| {
        const flags = linux.fcntl(descriptor, linux.F.GETFL, 0);
        if (sys.errno_of(flags) != .SUCCESS) continue;
        const nonblock: usize = 1 << @bitOffsetOf(linux.O, "NONBLOCK");
        if (flags & nonblock != 0) _ = linux.fcntl(descriptor, linux.F.SETFL, flags & ~nonblock);
    }
}

test "exec: packed lists must match their counts" {
    const allocator = std.testing.allocator;
    const list = try pointers(allocator, "a\x00bc\x00", 2);
    defer allocator.free(list);
    try std.testing.expectEqualStrings("bc", std.mem.span(list[1].?));
    try std.testing.expect(list[2] == null);
    try std.testing.expectError(error.Invalid, pointers(allocator, "a\x00bc\x00", 1));
    try std.testing.expectError(error.Invalid, pointers(allocator, "a\x00bc", 2));
    try std.testing.expectError(error.Invalid, pointers(allocator, "", strings_max + 1));
}

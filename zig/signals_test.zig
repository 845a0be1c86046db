//! Tests of zig/signals.zig. They install the SIGUSR1 handler in the test process itself, which
//! is what the agent does; other tests' threads may exist and take the signal, which must work.
const std = @import("std");
const testing = std.testing;
const linux = std.os.linux;
const signals = @import("signals.zig");
const sys = @import("sys.zig");

/// The next sender pid, waiting up to a few seconds: the signal may be handled on another thread
/// after kill() returns.
fn next_sender(fd: i32) !i32 {
    var poll_fd = [_]linux.pollfd{.{ .fd = fd, .events = linux.POLL.IN, .revents = 0 }};
    const deadline = sys.now_ns() + 5 * std.time.ns_per_s;
    while (sys.now_ns() < deadline) {
        var out: [1]signals.Record = undefined;
        if (signals.read_senders(fd, &out) == 1) return out[0][0];
        _ = linux.poll(&poll_fd, 1, 100);
    }
    return error.NoSignalArrived;
}

fn expect_empty(fd: i32) !void {
    var out: [4]signals.Record = undefined;
    try testing.expectEqual(@as(usize, 0), signals.read_senders(fd, &out));
}

fn wait_exit(pid: i32) !void {
    var status: u32 = 0;
    while (true) {
        const rc = linux.wait4(pid, &status, 0, null);
        if (sys.errno_of(rc) == .INTR) continue;
        try testing.expectEqual(linux.E.SUCCESS, sys.errno_of(rc));
        break;
    }
    try testing.expect(linux.W.IFEXITED(status));
    try testing.expectEqual(@as(u8, 0), linux.W.EXITSTATUS(status));
}

test "signals: install_sigusr1 is idempotent and a SIGUSR1 to ourselves reports our pid" {
    const fd = try signals.install_sigusr1();
    try testing.expectEqual(fd, try signals.install_sigusr1());
    try testing.expect(linux.fcntl(fd, linux.F.GETFD, 0) & linux.FD_CLOEXEC != 0);
    const nonblock: usize = @as(u32, @bitCast(linux.O{ .NONBLOCK = true }));
    try testing.expect(linux.fcntl(fd, linux.F.GETFL, 0) & nonblock != 0);
    try expect_empty(fd);

    const self = linux.getpid();
    try testing.expectEqual(linux.E.SUCCESS, sys.errno_of(linux.kill(self, linux.SIG.USR1)));
    try testing.expectEqual(self, try next_sender(fd));
    try expect_empty(fd);

    // Several queue up as records, each waited for in turn since standard signals pending at
    // the same time merge into one.
    for (1..4) |queued| {
        try testing.expectEqual(linux.E.SUCCESS, sys.errno_of(linux.kill(self, linux.SIG.USR1)));
        try wait_queued(fd, queued);
    }
    var out: [8]signals.Record = undefined;
    try testing.expectEqual(@as(usize, 3), signals.read_senders(fd, &out));
    // Each record starts with the sender, then its parent.
    for (out[0..3]) |record| {
        try testing.expectEqual(self, record[0]);
        try testing.expectEqual(linux.getppid(), record[1]);
    }
    try expect_empty(fd);
}

/// Waits until `records` pids are queued, without taking them.
fn wait_queued(fd: i32, records: usize) !void {
    var poll_fd = [_]linux.pollfd{.{ .fd = fd, .events = linux.POLL.IN, .revents = 0 }};
    const deadline = sys.now_ns() + 5 * std.time.ns_per_s;
    while (sys.now_ns() < deadline) {
        var available: i32 = 0;
        _ = linux.ioctl(fd, linux.T.FIONREAD, @intFromPtr(&available));
        if (available >= records * @sizeOf(signals.Record)) return;
        _ = linux.poll(&poll_fd, 1, 10);
    }
    return error.NoSignalArrived;
}

test "signals: a forked child's SIGUSR1 reports the child's pid" {
    const fd = try signals.install_sigusr1();
    try expect_empty(fd);
    const parent = linux.getpid();
    const child = try std.posix.fork();
    if (child == 0) {
        // Raw syscalls only: the child of a threaded process must not touch libc state.
        _ = linux.kill(parent, linux.SIG.USR1);
        linux.exit_group(0);
    }
    try wait_exit(child);
    const sender = try next_sender(fd);
    try testing.expectEqual(child, sender);
    try testing.expect(signals.is_same_or_descendant(sender, child));
    try expect_empty(fd);
}

test "signals: a grandchild's SIGUSR1 maps to the child it descends from" {
    const fd = try signals.install_sigusr1();
    try expect_empty(fd);
    const parent = linux.getpid();
    // The grandchild stays alive (blocked on this pipe) until we have looked it up in /proc.
    var hold: [2]i32 = undefined;
    try testing.expectEqual(
        linux.E.SUCCESS,
        sys.errno_of(linux.pipe2(&hold, .{ .CLOEXEC = true })),
    );
    defer sys.close(hold[0]);
    var hold_write_open = true;
    defer if (hold_write_open) sys.close(hold[1]);

    const child = try std.posix.fork();
    if (child == 0) {
        sys.close(hold[1]);
        const grandchild = linux.fork();
        if (grandchild == 0) {
            _ = linux.kill(parent, linux.SIG.USR1);
            var byte: [1]u8 = undefined;
            _ = linux.read(hold[0], &byte, 1);
            linux.exit_group(0);
        }
        var status: u32 = 0;
        _ = linux.wait4(@intCast(grandchild), &status, 0, null);
        linux.exit_group(0);
    }
    const sender = try next_sender(fd);
    try testing.expect(sender != child);
    try testing.expect(sender != parent);
    try testing.expect(signals.is_same_or_descendant(sender, child));
    try testing.expect(signals.is_same_or_descendant(sender, parent));
    try testing.expect(!signals.is_same_or_descendant(child, sender));
    sys.close(hold[1]);
    hold_write_open = false;
    try wait_exit(child);
}

test "signals: is_same_or_descendant follows /proc parent links" {
    const self = linux.getpid();
    const parent = linux.getppid();
    try testing.expect(signals.is_same_or_descendant(self, self));
    try testing.expect(signals.is_same_or_descendant(self, parent));
    try testing.expect(!signals.is_same_or_descendant(parent, self));
    try testing.expect(!signals.is_same_or_descendant(1, self));
    // The largest pid the kernel can hand out is 2^22; above that no process exists.
    try testing.expect(!signals.is_same_or_descendant(1 << 23, self));
    try testing.expect(!signals.is_same_or_descendant(std.math.maxInt(i32), 1));
    try testing.expect(!signals.is_same_or_descendant(0, self));
    try testing.expect(!signals.is_same_or_descendant(-1, self));
    try testing.expect(!signals.is_same_or_descendant(self, 0));
    try testing.expect(!signals.is_same_or_descendant(self, -5));
}

test "signals: parent_from_stat takes comm as it comes and refuses malformed lines" {
    try testing.expectEqual(@as(?i32, 1), signals.parent_from_stat("42 (bash) S 1 42 42 0 -1\n"));
    try testing.expectEqual(@as(?i32, 77), signals.parent_from_stat("42 (a b) c) R 77 42 42 0\n"));
    try testing.expectEqual(@as(?i32, 9), signals.parent_from_stat("42 ()) (x) ) Z 9 1\n"));
    try testing.expectEqual(@as(?i32, 0), signals.parent_from_stat("2 (kthreadd) S 0 0 0"));
    const malformed = [_][]const u8{
        "",                  "42 bash S 1 42",            "42 (bash) S",
        "42 (bash)",         "42 (bash) S x 42",          "42 (bash) S -3 42",
        "42 (bash) SS 1 42", "42 (bash) S 99999999999 1", "42 (bash) S 1) 2",
        "\x00\xff)",
    };
    for (malformed) |line| try testing.expectEqual(@as(?i32, null), signals.parent_from_stat(line));
}

test "signals: take_pending takes a SIGUSR1 that no handler has run for yet, with its sender" {
    const fd = try signals.install_sigusr1();
    try expect_empty(fd);
    // Blocked here, and sent to this very thread, so no other thread's handler can take it: it
    // stays pending until take_pending does, as in the pump thread, which blocks every signal.
    var usr1 = linux.empty_sigset;
    linux.sigaddset(&usr1, linux.SIG.USR1);
    var old: linux.sigset_t = undefined;
    try testing.expectEqual(
        linux.E.SUCCESS,
        sys.errno_of(linux.sigprocmask(linux.SIG.BLOCK, &usr1, &old)),
    );
    defer _ = linux.sigprocmask(linux.SIG.SETMASK, &old, null);

    var records: [4]signals.Record = undefined;
    try testing.expectEqual(@as(usize, 0), signals.take_pending(&records));
    const self = linux.getpid();
    try testing.expectEqual(
        linux.E.SUCCESS,
        sys.errno_of(linux.tkill(linux.gettid(), linux.SIG.USR1)),
    );
    try testing.expectEqual(@as(usize, 1), signals.take_pending(&records));
    try testing.expectEqual(self, records[0][0]);
    try testing.expectEqual(linux.getppid(), records[0][1]);
    try testing.expectEqual(@as(usize, 0), signals.take_pending(&records));
    try testing.expect(!signals.handlers_running());
    try expect_empty(fd);
}

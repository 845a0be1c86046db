//! One inotify instance per process for every shm vchan client waiting for its server's socket
//! to appear (the Xen client's xenstore watch).
//!
//! Why shared: closing an inotify instance that had a watch waits for an SRCU grace period,
//! 0-20 ms (7 ms typical on the 2-core test machine), and the client dropped its own instance
//! right when it connected, on the pump thread, in the middle of every call's set-up. An
//! instance per waiting client also counts against the user's `max_user_instances` (128 by
//! default), which a burst of concurrent calls could exhaust. Here the instance is created once
//! and never closed; watches are reference-counted per directory and removed (a quick
//! `inotify_rm_watch`) when the last waiter of a directory leaves.
//!
//! Every waiter has the shared fd in its epoll set and an event fd of its own. Whoever sees the
//! shared fd readable drains it and kicks every waiter's event fd, so no waiter can miss an
//! event another one drained. A kick only makes a waiter retry `connect`, so waking the
//! waiters of other directories too is harmless.
const std = @import("std");
const linux = std.os.linux;

const constants = @import("../constants.zig");
const diag = @import("../diag.zig");
const sys = @import("../sys.zig");
const Fail = diag.Fail;

const mask = linux.IN.CREATE | linux.IN.MOVED_TO | linux.IN.ATTRIB;

const Waiter = struct { wd: i32, event_fd: i32 };

var mutex: std.Thread.Mutex = .{};
var inotify_fd: i32 = -1;
var waiters: std.ArrayListUnmanaged(Waiter) = .{};

pub const Registration = struct {
    /// The shared inotify fd, to be added to the waiter's epoll set (not owned by the waiter).
    fd: i32,
    wd: i32,
};

/// Watches `dir` for the waiter whose event fd is `event_fd` (kicked on every change).
pub fn register(dir: [:0]const u8, event_fd: i32) Fail!Registration {
    mutex.lock();
    defer mutex.unlock();
    if (inotify_fd < 0) inotify_fd = try sys.fd(
        linux.inotify_init1(linux.IN.NONBLOCK | linux.IN.CLOEXEC),
        "inotify_init1",
    );
    waiters.ensureUnusedCapacity(std.heap.c_allocator, 1) catch return diag.fail(
        .NOMEM,
        "out of memory",
        .{},
    );
    // The same directory gets the same wd (same mask: the watch is unchanged).
    const wd: i32 = @intCast(
        try sys.check(linux.inotify_add_watch(inotify_fd, dir, mask), "inotify_add_watch"),
    );
    waiters.appendAssumeCapacity(.{ .wd = wd, .event_fd = event_fd });
    return .{ .fd = inotify_fd, .wd = wd };
}

/// Ends a registration; the directory's watch goes with its last waiter. Call it before
/// closing `event_fd`.
pub fn unregister(registration: Registration, event_fd: i32) void {
    mutex.lock();
    defer mutex.unlock();
    var others = false;
    var index: usize = 0;
    var found = false;
    while (index < waiters.items.len) {
        const waiter = waiters.items[index];
        if (!found and waiter.wd == registration.wd and waiter.event_fd == event_fd) {
            _ = waiters.swapRemove(index);
            found = true;
            continue;
        }
        if (waiter.wd == registration.wd) others = true;
        index += 1;
    }
    std.debug.assert(found);
    // EINVAL when the kernel already dropped it (the directory was deleted): nothing to do.
    if (!others) _ = linux.inotify_rm_watch(inotify_fd, registration.wd);
}

/// The shared fd was readable: empty it and wake every waiter, unless every event was about a
/// name no waiter connects to (see `not_for_waiters`).
pub fn drain_and_kick() void {
    mutex.lock();
    defer mutex.unlock();
    if (inotify_fd < 0) return;
    var buffer: [4096]u8 align(@alignOf(linux.inotify_event)) = undefined;
    var any = false;
    while (true) {
        const rc = linux.read(inotify_fd, &buffer, buffer.len);
        if (sys.errno_of(rc) != .SUCCESS or rc == 0) break;
        if (!any) any = worth_a_kick(buffer[0..rc]);
    }
    if (!any) return;
    const one: u64 = 1;
    for (waiters.items) |waiter| _ = linux.write(waiter.event_fd, std.mem.asBytes(&one), 8);
}

/// Whether `events` (what one read returned) name anything a waiter could connect to. The
/// kernel only ever returns whole events; a short or odd buffer counts as worth a kick.
fn worth_a_kick(events: []const u8) bool {
    const header_bytes = @sizeOf(linux.inotify_event);
    var offset: usize = 0;
    while (offset + header_bytes <= events.len) {
        const event: *align(1) const linux.inotify_event = @ptrCast(events[offset..].ptr);
        const name_end = offset + header_bytes + event.len;
        if (name_end > events.len) return true;
        const name = std.mem.sliceTo(events[offset + header_bytes .. name_end], 0);
        if (!not_for_waiters(name)) return true;
        offset = name_end;
    }
    return offset != events.len;
}

/// A shm server binds its socket under `NAME~` and renames it into place, and the lab's
/// broker links under `.broker.NAME` first (src/lab/broker.ts): their creation and chmod are
/// not yet anything to connect to, and woke every waiter for a `connect` bound to fail. A
/// waiting client's offer (shm.zig, "Who connects") is for servers, which do not watch.
fn not_for_waiters(name: []const u8) bool {
    return std.mem.endsWith(u8, name, "~") or std.mem.startsWith(u8, name, ".broker.") or
        (std.mem.startsWith(u8, name, constants.shm_offer_prefix) and
            std.mem.startsWith(u8, name[constants.shm_offer_prefix.len..], "."));
}

test "dir_watch: names no waiter connects to wake nobody, anything else does" {
    try std.testing.expect(not_for_waiters("shmvchan.1.2.513.sock~"));
    try std.testing.expect(not_for_waiters(".broker.shmvchan.1.2.513.sock"));
    try std.testing.expect(not_for_waiters("shmoffer.1.2.513.sock"));
    try std.testing.expect(!not_for_waiters("shmvchan.1.2.513.sock"));
    try std.testing.expect(!not_for_waiters(""));
    var buffer: [256]u8 align(@alignOf(linux.inotify_event)) = undefined;
    const staging = event_bytes(buffer[0..], "shmvchan.1.2.513.sock~");
    try std.testing.expect(!worth_a_kick(buffer[0..staging]));
    const both = staging + event_bytes(buffer[staging..], "shmvchan.1.2.513.sock");
    try std.testing.expect(worth_a_kick(buffer[0..both]));
    // An event about the directory itself carries no name: a kick, to be safe.
    try std.testing.expect(worth_a_kick(buffer[0..event_bytes(buffer[0..], "")]));
    try std.testing.expect(worth_a_kick(buffer[0 .. staging - 1]));
}

/// Writes one inotify event naming `name` (NUL-padded to 16 bytes, as the kernel pads).
fn event_bytes(out: []u8, name: []const u8) usize {
    const padded = if (name.len == 0) 0 else std.mem.alignForward(usize, name.len + 1, 16);
    const event = linux.inotify_event{
        .wd = 1,
        .mask = linux.IN.CREATE,
        .cookie = 0,
        .len = @intCast(padded),
    };
    @memcpy(out[0..@sizeOf(linux.inotify_event)], std.mem.asBytes(&event));
    const name_area = out[@sizeOf(linux.inotify_event)..][0..padded];
    @memset(name_area, 0);
    @memcpy(name_area[0..name.len], name);
    return @sizeOf(linux.inotify_event) + padded;
}

test "dir_watch: a change wakes every waiter, and watches go with their last waiter" {
    var dir_buffer: [64]u8 = undefined;
    const dir = try std.fmt.bufPrintZ(&dir_buffer, "/tmp/qrx-dirwatch-{d}", .{linux.getpid()});
    std.fs.cwd().makePath(dir) catch unreachable;
    defer std.fs.cwd().deleteTree(dir) catch {}; // a leftover in /tmp fails no later test
    const a = try sys.fd(linux.eventfd(0, linux.EFD.CLOEXEC | linux.EFD.NONBLOCK), "eventfd");
    defer sys.close(a);
    const b = try sys.fd(linux.eventfd(0, linux.EFD.CLOEXEC | linux.EFD.NONBLOCK), "eventfd");
    defer sys.close(b);
    const ra = try register(dir, a);
    const rb = try register(dir, b);
    try std.testing.expectEqual(ra.wd, rb.wd);
    var path_buffer: [96]u8 = undefined;
    const file = try std.fmt.bufPrint(&path_buffer, "{s}/x", .{dir});
    (try std.fs.cwd().createFile(file, .{})).close();
    drain_and_kick();
    var counter: u64 = 0;
    try std.testing.expectEqual(@as(usize, 8), linux.read(a, std.mem.asBytes(&counter), 8));
    try std.testing.expectEqual(@as(usize, 8), linux.read(b, std.mem.asBytes(&counter), 8));
    unregister(ra, a);
    // b still watches: a new file still wakes it.
    const file2 = try std.fmt.bufPrint(&path_buffer, "{s}/y", .{dir});
    (try std.fs.cwd().createFile(file2, .{})).close();
    drain_and_kick();
    try std.testing.expectEqual(@as(usize, 8), linux.read(b, std.mem.asBytes(&counter), 8));
    unregister(rb, b);
    // The last waiter took the watch with it: the kernel now refuses to remove it again.
    try std.testing.expectEqual(
        linux.E.INVAL,
        sys.errno_of(linux.inotify_rm_watch(inotify_fd, rb.wd)),
    );
}

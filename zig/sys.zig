//! Thin helpers over raw Linux syscalls. Everything in the library reports failures as an errno
//! (returned across the C ABI as `-errno`), so the raw `std.os.linux` wrappers, which hand back
//! the kernel's errno untouched, suit better than `std.posix` error sets.
const std = @import("std");
const linux = std.os.linux;
const diag = @import("diag.zig");

pub const E = linux.E;

pub fn errno_of(rc: usize) E {
    return linux.E.init(rc);
}

/// A syscall's result, or `Fail` with "what: ERRNO" recorded.
pub fn check(rc: usize, what: []const u8) diag.Fail!usize {
    const errno = linux.E.init(rc);
    if (errno != .SUCCESS) return diag.fail(errno, "{s}: {s}", .{ what, @tagName(errno) });
    return rc;
}

pub fn fd(rc: usize, what: []const u8) diag.Fail!i32 {
    return @intCast(try check(rc, what));
}

pub fn close(descriptor: i32) void {
    if (descriptor >= 0) _ = linux.close(descriptor);
}

pub fn now_ns() u64 {
    return clock_ns(.MONOTONIC);
}

/// The wall clock every process shares: the timing trace's (src/trace.ts).
pub fn realtime_ns() u64 {
    return clock_ns(.REALTIME);
}

fn clock_ns(clock: std.c.clockid_t) u64 {
    // libc's, which goes through the vDSO: std.os.linux's finds the vDSO only in an executable
    // Zig started, so in this library loaded by Bun it made a real syscall every time.
    var ts: std.c.timespec = undefined;
    _ = std.c.clock_gettime(clock, &ts);
    return @as(u64, @intCast(ts.sec)) * std.time.ns_per_s + @as(u64, @intCast(ts.nsec));
}

/// A poll timeout that ends at or after `deadline_ns` (rounded up to whole ms, at most
/// maxInt(i32)); 0 once it has passed.
pub fn ms_until(deadline_ns: u64, now: u64) i32 {
    if (deadline_ns <= now) return 0;
    const ms = std.math.divCeil(u64, deadline_ns - now, std.time.ns_per_ms) catch unreachable;
    return @intCast(@min(ms, std.math.maxInt(i32)));
}

test "sys: ms_until rounds up, is 0 once the deadline passed, and clamps" {
    try std.testing.expectEqual(0, ms_until(5, 5));
    try std.testing.expectEqual(0, ms_until(5, 9));
    try std.testing.expectEqual(1, ms_until(1, 0));
    try std.testing.expectEqual(2, ms_until(2 * std.time.ns_per_ms, 0));
    try std.testing.expectEqual(3, ms_until(2 * std.time.ns_per_ms + 1, 0));
    try std.testing.expectEqual(std.math.maxInt(i32), ms_until(std.math.maxInt(u64), 0));
}

// Constants the standard library does not name on this Zig version.
pub const SCM_RIGHTS: i32 = 1;
pub const SO_PEERCRED: u32 = 17;
pub const POLLRDHUP: i16 = 0x2000;
pub const F_DUPFD_CLOEXEC: i32 = 1030;
pub const F_ADD_SEALS: i32 = 1033;
pub const F_GET_SEALS: i32 = 1034;
pub const F_SEAL_SEAL: u32 = 0x1;
pub const F_SEAL_SHRINK: u32 = 0x2;
pub const F_SEAL_GROW: u32 = 0x4;

pub const Ucred = extern struct { pid: i32, uid: u32, gid: u32 };

/// The uid of the process at the other end of unix socket `socket` (SO_PEERCRED), or null.
pub fn peer_uid(socket: i32) ?u32 {
    var credentials: Ucred = undefined;
    var length: linux.socklen_t = @sizeOf(Ucred);
    const out: [*]u8 = @ptrCast(&credentials);
    const rc = linux.getsockopt(socket, linux.SOL.SOCKET, SO_PEERCRED, out, &length);
    return if (linux.E.init(rc) == .SUCCESS) credentials.uid else null;
}

/// Control buffer big enough for SCM_RIGHTS with up to `n` fds, aligned as cmsghdr must be.
pub fn CmsgBuffer(comptime n: usize) type {
    return extern struct {
        const header_bytes = 16; // struct cmsghdr { u64 len; i32 level; i32 type; }
        const data_bytes = n * @sizeOf(i32);
        pub const space = header_bytes + std.mem.alignForward(usize, data_bytes, 8);
        bytes: [space]u8 align(8) = [_]u8{0} ** space,

        pub fn set_fds(self: *@This(), fds: [n]i32) void {
            std.mem.writeInt(u64, self.bytes[0..8], header_bytes + data_bytes, .little);
            std.mem.writeInt(i32, self.bytes[8..12], linux.SOL.SOCKET, .little);
            std.mem.writeInt(i32, self.bytes[12..16], SCM_RIGHTS, .little);
            for (fds, 0..) |descriptor, i| {
                std.mem.writeInt(i32, self.bytes[16 + 4 * i ..][0..4], descriptor, .little);
            }
        }

        pub const Fds = struct {
            items: [n]i32 = undefined,
            count: usize = 0,

            pub fn slice(self: *const Fds) []const i32 {
                return self.items[0..self.count];
            }
        };

        /// Every fd the kernel installed (up to `n`; any beyond are closed), however many.
        pub fn take_fds_any(self: *@This(), controllen: usize) Fds {
            var out: Fds = .{};
            if (controllen < header_bytes) return out;
            const len = std.mem.readInt(u64, self.bytes[0..8], .little);
            const level = std.mem.readInt(i32, self.bytes[8..12], .little);
            const kind = std.mem.readInt(i32, self.bytes[12..16], .little);
            const malformed = level != linux.SOL.SOCKET or kind != SCM_RIGHTS;
            if (malformed or len < header_bytes or len > space) return out;
            const count = (len - header_bytes) / 4;
            for (0..count) |i| {
                const descriptor = std.mem.readInt(i32, self.bytes[16 + 4 * i ..][0..4], .little);
                if (i < n) out.items[i] = descriptor else close(descriptor);
            }
            out.count = @min(count, n);
            return out;
        }

        /// The fds the kernel installed, or null if the message carried none or the wrong count.
        /// Any fds received beyond what we expect are closed so a hostile sender cannot leak them
        /// into our process.
        pub fn take_fds(self: *@This(), controllen: usize) ?[n]i32 {
            if (controllen < header_bytes) return null;
            const len = std.mem.readInt(u64, self.bytes[0..8], .little);
            const level = std.mem.readInt(i32, self.bytes[8..12], .little);
            const kind = std.mem.readInt(i32, self.bytes[12..16], .little);
            if (level != linux.SOL.SOCKET or kind != SCM_RIGHTS) return null;
            if (len < header_bytes or len > space) return null;
            const count = (len - header_bytes) / 4;
            var out: [n]i32 = undefined;
            var i: usize = 0;
            while (i < count) : (i += 1) {
                const descriptor = std.mem.readInt(i32, self.bytes[16 + 4 * i ..][0..4], .little);
                if (i < n) out[i] = descriptor else close(descriptor);
            }
            if (count != n) {
                for (out[0..@min(count, n)]) |descriptor| close(descriptor);
                return null;
            }
            return out;
        }
    };
}

/// sendmsg of one buffer and an optional control block (SCM_RIGHTS); the raw result.
pub fn send_one(descriptor: i32, data: []const u8, control: ?[]const u8, flags: u32) usize {
    var iov = [_]std.posix.iovec_const{.{ .base = data.ptr, .len = data.len }};
    const message = linux.msghdr_const{
        .name = null,
        .namelen = 0,
        .iov = &iov,
        .iovlen = 1,
        .control = if (control) |c| c.ptr else null,
        .controllen = if (control) |c| @intCast(c.len) else 0,
        .flags = 0,
    };
    return linux.sendmsg(descriptor, &message, flags);
}

pub const Received = struct { rc: usize, flags: u32, control_bytes: usize };

/// recvmsg into one buffer and a control block: the raw result, the message's flags
/// (TRUNC, CTRUNC) and how much of `control` the kernel filled.
pub fn receive_one(descriptor: i32, buffer: []u8, control: []u8, flags: u32) Received {
    var iov = [_]std.posix.iovec{.{ .base = buffer.ptr, .len = buffer.len }};
    var message = linux.msghdr{
        .name = null,
        .namelen = 0,
        .iov = &iov,
        .iovlen = 1,
        .control = control.ptr,
        .controllen = @intCast(control.len),
        .flags = 0,
    };
    const rc = linux.recvmsg(descriptor, &message, flags);
    return .{ .rc = rc, .flags = @bitCast(message.flags), .control_bytes = message.controllen };
}

/// Reads a blocking fd until `out` is full: the bytes read, fewer at EOF or on an error (EINTR
/// is retried).
pub fn read_full(descriptor: i32, out: []u8) usize {
    var got: usize = 0;
    while (got < out.len) {
        const rc = linux.read(descriptor, out[got..].ptr, out.len - got);
        switch (errno_of(rc)) {
            .SUCCESS => if (rc == 0) return got else {
                got += rc;
            },
            .INTR => {},
            else => return got,
        }
    }
    return got;
}

/// Reads a non-blocking fd (eventfd, inotify, pipe) until it has nothing more to give.
pub fn drain(descriptor: i32) void {
    if (descriptor < 0) return;
    var buffer: [512]u8 align(8) = undefined;
    while (true) {
        const rc = linux.read(descriptor, &buffer, buffer.len);
        if (errno_of(rc) != .SUCCESS or rc == 0) return;
    }
}

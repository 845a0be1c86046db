//! What both vchan backends (shm.zig, socket.zig) share: the rendezvous socket's name, the
//! reason a vchan ended, the epoll set every wait sleeps on, and `connect_wait`'s deadline.
const std = @import("std");
const linux = std.os.linux;
const assert = std.debug.assert;
const constants = @import("../constants.zig");
const diag = @import("../diag.zig");
const sys = @import("../sys.zig");
const dir_watch = @import("dir_watch.zig");

/// `<dir>/<prefix>.<server>.<client>.<port>.sock` (shm: `shmvchan`, vchan-socket: `vchan`),
/// kept within `sockaddr_un`'s 108 bytes.
pub const SocketPath = struct {
    buffer: [constants.socket_path_bytes_max + 1]u8 = undefined,
    len: u32 = 0,

    pub fn init(
        dir: []const u8,
        prefix: []const u8,
        server_domain: i32,
        client_domain: i32,
        port: i32,
    ) diag.Fail!SocketPath {
        var result = SocketPath{};
        const written = std.fmt.bufPrintZ(
            &result.buffer,
            "{s}/{s}.{d}.{d}.{d}.sock",
            .{ dir, prefix, server_domain, client_domain, port },
        ) catch {
            return diag.fail(
                .NAMETOOLONG,
                "vchan directory {s} is too long for a unix socket path (max {d} bytes)",
                .{ dir, constants.socket_path_bytes_max },
            );
        };
        result.len = @intCast(written.len);
        return result;
    }

    pub fn slice(self: *const SocketPath) [:0]const u8 {
        return self.buffer[0..self.len :0];
    }

    pub fn address(self: *const SocketPath) linux.sockaddr.un {
        return address_of(self.slice());
    }
};

pub fn address_of(path: []const u8) linux.sockaddr.un {
    std.debug.assert(path.len <= constants.socket_path_bytes_max);
    var result = linux.sockaddr.un{ .family = linux.AF.UNIX, .path = [_]u8{0} ** 108 };
    @memcpy(result.path[0..path.len], path);
    return result;
}

pub fn make_directory(dir: []const u8) diag.Fail!void {
    std.fs.cwd().makePath(dir) catch |err| {
        return diag.fail(
            .ACCES,
            "cannot create vchan directory {s}: {s}",
            .{ dir, @errorName(err) },
        );
    };
}

/// Why a vchan disconnected or stopped taking writes, for reports (empty while neither
/// happened). A protocol violation by the peer is its own kind: reads and writes fail on it.
pub const Reason = struct {
    pub const Kind = enum { none, closed, violation };

    kind: Kind = .none,
    buffer: [200]u8 = undefined,
    len: u32 = 0,

    /// A message longer than the buffer is cut there.
    pub fn set(self: *Reason, kind: Kind, comptime fmt: []const u8, args: anytype) void {
        assert(kind != .none);
        const written = std.fmt.bufPrint(&self.buffer, fmt, args) catch self.buffer[0..];
        self.len = @intCast(written.len);
        self.kind = kind;
    }

    pub fn slice(self: *const Reason) []const u8 {
        return self.buffer[0..self.len];
    }

    /// EPIPE for a call on a vchan that has closed, saying why if it is known.
    pub fn closed_failure(self: *const Reason, remote_domain: i32, port: i32) diag.Fail {
        if (self.kind != .none) return diag.fail(
            .PIPE,
            "vchan to domain {d} port {d} is closed: {s}",
            .{ remote_domain, port, self.slice() },
        );
        return diag.fail(
            .PIPE,
            "vchan to domain {d} port {d} is closed by the peer",
            .{ remote_domain, port },
        );
    }
};

/// The epoll set a backend sleeps on; `Tag` (stored in `epoll_event.data.u32`) says what an
/// event is about.
pub fn Epoll(comptime Tag: type) type {
    return struct {
        const Self = @This();

        fd: i32 = -1,

        pub fn create(self: *Self) diag.Fail!void {
            assert(self.fd < 0);
            self.fd = try sys.fd(linux.epoll_create1(linux.EPOLL.CLOEXEC), "epoll_create1");
        }

        pub fn add(self: Self, descriptor: i32, tag: Tag, events: u32) diag.Fail!void {
            var event = event_of(tag, events);
            _ = try sys.check(
                linux.epoll_ctl(self.fd, linux.EPOLL.CTL_ADD, descriptor, &event),
                "epoll_ctl",
            );
        }

        pub fn modify(self: Self, descriptor: i32, tag: Tag, events: u32) void {
            var event = event_of(tag, events);
            _ = linux.epoll_ctl(self.fd, linux.EPOLL.CTL_MOD, descriptor, &event);
        }

        fn event_of(tag: Tag, events: u32) linux.epoll_event {
            return .{ .events = events, .data = .{ .u32 = @intFromEnum(tag) } };
        }

        /// Takes `descriptor.*` out of the set and closes it (if open).
        pub fn drop(self: Self, descriptor: *i32) void {
            if (descriptor.* < 0) return;
            _ = linux.epoll_ctl(self.fd, linux.EPOLL.CTL_DEL, descriptor.*, null);
            sys.close(descriptor.*);
            descriptor.* = -1;
        }

        /// Leaves the shared watch (its fd is not ours to close). Before `own_event` closes.
        pub fn stop_watching(self: Self, watch: *?dir_watch.Registration, own_event: i32) void {
            const registration = watch.* orelse return;
            if (self.fd >= 0) {
                _ = linux.epoll_ctl(self.fd, linux.EPOLL.CTL_DEL, registration.fd, null);
            }
            dir_watch.unregister(registration, own_event);
            watch.* = null;
        }

        pub fn close(self: *Self) void {
            sys.close(self.fd);
            self.fd = -1;
        }
    };
}

/// `connect_wait`'s limit: `timeout_ms` from now, or none when it is negative.
pub const ConnectDeadline = struct {
    timeout_ms: i32,
    deadline_ns: u64,

    pub fn init(timeout_ms: i32) ConnectDeadline {
        const forever = std.math.maxInt(u64);
        const timeout_ns = @as(u64, @intCast(@max(timeout_ms, 0))) * std.time.ns_per_ms;
        return .{
            .timeout_ms = timeout_ms,
            .deadline_ns = if (timeout_ms < 0) forever else sys.now_ns() + timeout_ns,
        };
    }

    /// How long the next wait may sleep (-1: no limit), or TIMEDOUT once the deadline passed.
    pub fn remaining_ms(self: ConnectDeadline, is_client: bool, path: []const u8) diag.Fail!i32 {
        if (self.deadline_ns == std.math.maxInt(u64)) return -1;
        const now = sys.now_ns();
        if (now < self.deadline_ns) return sys.ms_until(self.deadline_ns, now);
        if (is_client) return diag.fail(
            .TIMEDOUT,
            "no vchan server at {s} after {d} ms",
            .{ path, self.timeout_ms },
        );
        return diag.fail(
            .TIMEDOUT,
            "no client connected to {s} within {d} ms",
            .{ path, self.timeout_ms },
        );
    }
};

test "backend_common: a reason keeps its kind and is cut at the buffer's end" {
    var reason = Reason{};
    try std.testing.expectEqual(Reason.Kind.none, reason.kind);
    reason.set(.violation, "peer protocol error: {s}", .{"bad index"});
    try std.testing.expectEqual(Reason.Kind.violation, reason.kind);
    try std.testing.expectEqualStrings("peer protocol error: bad index", reason.slice());
    reason.set(.closed, "{s}", .{"x" ** 300});
    try std.testing.expectEqual(Reason.Kind.closed, reason.kind);
    try std.testing.expectEqual(reason.buffer.len, reason.slice().len);
}

test "backend_common: a connect deadline that passed is TIMEDOUT; none never is" {
    try std.testing.expectEqual(-1, try ConnectDeadline.init(-1).remaining_ms(true, "p"));
    const passed = ConnectDeadline.init(0);
    try std.testing.expectError(error.Fail, passed.remaining_ms(true, "/run/x.sock"));
    try std.testing.expectEqualStrings("no vchan server at /run/x.sock after 0 ms", diag.message());
    try std.testing.expectError(error.Fail, passed.remaining_ms(false, "/run/x.sock"));
    try std.testing.expectEqual(@as(i32, @intFromEnum(linux.E.TIMEDOUT)), diag.errno());
    const later = ConnectDeadline.init(60_000);
    const left = try later.remaining_ms(false, "p");
    try std.testing.expect(left > 59_000 and left <= 60_000);
}

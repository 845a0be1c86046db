//! Connections for socket and TCP services (spec §5.3) and the socketpairs a client's local
//! program talks through. Every function blocks and hands back a CLOEXEC fd: the agent connects
//! to a service once per call, before the pump takes the fd over.
const std = @import("std");
const linux = std.os.linux;
const diag = @import("diag.zig");
const sys = @import("sys.zig");

const Fail = diag.Fail;
const AF = linux.AF;
const SOCK = linux.SOCK;

/// Messages keep the errno name visible, so a path longer than this shows only its tail.
const shown_path_bytes = 200;

/// A path for a message: its tail if it is too long (the start is usually a common prefix).
fn shown(path: []const u8) struct { []const u8, []const u8 } {
    if (path.len <= shown_path_bytes) return .{ "", path };
    return .{ "...", path[path.len - shown_path_bytes ..] };
}

/// A connected, blocking AF_UNIX stream to the socket at `path`, however long the path is.
pub fn connect_unix(path: []const u8) Fail!i32 {
    const prefix, const tail = shown(path);
    if (path.len == 0) return diag.fail(.NOENT, "connect to unix socket: empty path", .{});
    if (std.mem.indexOfScalar(u8, path, 0) != null) {
        return diag.fail(
            .INVAL,
            "connect to unix socket {s}{s}: NUL byte in path",
            .{ prefix, tail },
        );
    }
    if (path.len >= std.fs.max_path_bytes) {
        return diag.fail(
            .NAMETOOLONG,
            "connect to unix socket {s}{s}: NAMETOOLONG",
            .{ prefix, tail },
        );
    }

    var address = linux.sockaddr.un{ .family = AF.UNIX, .path = [_]u8{0} ** 108 };
    // sun_path holds 108 bytes with the NUL. Longer paths reach the socket through an O_PATH fd
    // for the socket inode itself: /proc/self/fd/N is a magic link the kernel's lookup follows
    // to that inode, whatever its path length (systemd does the same). Unlike upstream's
    // temporary symlink, nothing is created, so no writable directory is needed and nothing
    // can be left behind.
    var inode: i32 = -1;
    defer sys.close(inode);
    if (path.len < address.path.len) {
        @memcpy(address.path[0..path.len], path);
    } else {
        var terminated: [std.fs.max_path_bytes:0]u8 = undefined;
        @memcpy(terminated[0..path.len], path);
        terminated[path.len] = 0;
        const rc = linux.open(terminated[0..path.len :0], .{ .PATH = true, .CLOEXEC = true }, 0);
        const errno = sys.errno_of(rc);
        if (errno != .SUCCESS) {
            return diag.fail(
                errno,
                "connect to unix socket {s}{s}: {s}",
                .{ prefix, tail, @tagName(errno) },
            );
        }
        inode = @intCast(rc);
        _ = std.fmt.bufPrint(&address.path, "/proc/self/fd/{d}", .{inode}) catch unreachable;
    }

    const socket = try sys.fd(
        linux.socket(AF.UNIX, SOCK.STREAM | SOCK.CLOEXEC, 0),
        "socket(AF_UNIX)",
    );
    errdefer sys.close(socket);
    while (true) {
        const rc = linux.connect(socket, &address, @sizeOf(linux.sockaddr.un));
        const errno = sys.errno_of(rc);
        switch (errno) {
            .SUCCESS => return socket,
            // An AF_UNIX connect interrupted while waiting for backlog room is still unconnected,
            // so it can simply be tried again.
            .INTR => continue,
            else => {
                const via = if (inode >= 0) " (through /proc/self/fd)" else "";
                return diag.fail(
                    errno,
                    "connect to unix socket {s}{s}{s}: {s}",
                    .{ prefix, tail, via, @tagName(errno) },
                );
            },
        }
    }
}

/// The address of a numeric `host` (upstream's AI_NUMERICHOST): IPv6 when the host contains ':'
/// or '%' (a scope is a number or an interface name), else a dotted-quad IPv4. No DNS, ever.
pub fn parse_host(host: []const u8, port: u16) Fail!std.net.Address {
    if (host.len == 0) return diag.fail(.INVAL, "TCP service: empty host", .{});
    const prefix, const tail = shown(host);
    const ipv6 = std.mem.indexOfAny(u8, host, ":%") != null;
    if (ipv6) {
        return std.net.Address.resolveIp6(host, port) catch |err| {
            return diag.fail(
                .INVAL,
                "TCP service: {s}{s} is no numeric IPv6 address ({s})",
                .{ prefix, tail, @errorName(err) },
            );
        };
    }
    return std.net.Address.parseIp4(host, port) catch |err| {
        return diag.fail(
            .INVAL,
            "TCP service: {s}{s} is no numeric IPv4 address ({s})",
            .{ prefix, tail, @errorName(err) },
        );
    };
}

/// A connected, blocking TCP stream (TCP_NODELAY on: qrexec relays small interactive writes).
pub fn connect_tcp(host: []const u8, port: u16) Fail!i32 {
    if (port == 0) return diag.fail(.INVAL, "TCP service: port 0", .{});
    const address = try parse_host(host, port);
    const socket = try sys.fd(
        linux.socket(address.any.family, SOCK.STREAM | SOCK.CLOEXEC, linux.IPPROTO.TCP),
        if (address.any.family == AF.INET6) "socket(AF_INET6)" else "socket(AF_INET)",
    );
    errdefer sys.close(socket);
    const one: i32 = 1;
    _ = try sys.check(
        linux.setsockopt(
            socket,
            linux.IPPROTO.TCP,
            linux.TCP.NODELAY,
            std.mem.asBytes(&one),
            @sizeOf(i32),
        ),
        "setsockopt(TCP_NODELAY)",
    );

    var errno = sys.errno_of(linux.connect(socket, &address.any, address.getOsSockLen()));
    if (errno == .INTR) errno = finish_interrupted_connect(socket);
    if (errno != .SUCCESS) {
        return diag.fail(errno, "connect to TCP service {}: {s}", .{ address, @tagName(errno) });
    }
    return socket;
}

/// A TCP connect cut short by a signal goes on in the background (trying again gives EALREADY),
/// so wait for it to settle and take its outcome from SO_ERROR.
fn finish_interrupted_connect(socket: i32) linux.E {
    var poll_fd = [_]linux.pollfd{.{ .fd = socket, .events = linux.POLL.OUT, .revents = 0 }};
    while (true) {
        const rc = linux.poll(&poll_fd, 1, -1);
        const errno = sys.errno_of(rc);
        if (errno == .INTR) continue;
        if (errno != .SUCCESS) return errno;
        break;
    }
    var result: i32 = 0;
    var len: linux.socklen_t = @sizeOf(i32);
    const errno = sys.errno_of(
        linux.getsockopt(socket, linux.SOL.SOCKET, linux.SO.ERROR, std.mem.asBytes(&result), &len),
    );
    if (errno != .SUCCESS) return errno;
    return @enumFromInt(@as(u16, @intCast(result)));
}

/// Two connected AF_UNIX stream ends: stdio that works both ways, which single-socket mode
/// (spec §6.6) relies on.
pub fn socketpair_stream() Fail![2]i32 {
    var fds: [2]i32 = undefined;
    _ = try sys.check(
        linux.socketpair(AF.UNIX, SOCK.STREAM | SOCK.CLOEXEC, 0, &fds),
        "socketpair(AF_UNIX)",
    );
    return fds;
}

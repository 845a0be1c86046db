//! Tests of zig/net.zig against listeners in this process (unix sockets in a temp dir, TCP on
//! loopback ephemeral ports).
const std = @import("std");
const testing = std.testing;
const linux = std.os.linux;
const diag = @import("diag.zig");
const net = @import("net.zig");
const sys = @import("sys.zig");

fn ok(rc: usize) !usize {
    try testing.expectEqual(linux.E.SUCCESS, sys.errno_of(rc));
    return rc;
}

fn expect_failure(code: linux.E, expected_in_message: []const []const u8) !void {
    try testing.expectEqual(@as(i32, @intFromEnum(code)), diag.errno());
    for (expected_in_message) |part| {
        if (std.mem.indexOf(u8, diag.message(), part) == null) {
            std.debug.print("message {s} lacks {s}\n", .{ diag.message(), part });
            return error.TestExpectedEqual;
        }
    }
}

fn expect_cloexec(descriptor: i32) !void {
    const flags = try ok(linux.fcntl(descriptor, linux.F.GETFD, 0));
    try testing.expect(flags & linux.FD_CLOEXEC != 0);
}

/// Both directions through a connected pair, one byte string each way.
fn expect_round_trip(a: i32, b: i32) !void {
    var buffer: [16]u8 = undefined;
    try testing.expectEqual(@as(usize, 5), try ok(linux.write(a, "hello", 5)));
    try testing.expectEqual(@as(usize, 5), try ok(linux.read(b, &buffer, buffer.len)));
    try testing.expectEqualStrings("hello", buffer[0..5]);
    try testing.expectEqual(@as(usize, 3), try ok(linux.write(b, "bye", 3)));
    try testing.expectEqual(@as(usize, 3), try ok(linux.read(a, &buffer, buffer.len)));
    try testing.expectEqualStrings("bye", buffer[0..3]);
}

/// A listening unix socket bound to `name` in `dir`. Bound under a short name and then renamed
/// into place, so the test's own listener does not depend on the long-path trick under test.
fn listen_unix(dir: std.fs.Dir, dir_path: []const u8, name: []const u8) !i32 {
    const socket = try sys.fd(
        linux.socket(linux.AF.UNIX, linux.SOCK.STREAM | linux.SOCK.CLOEXEC, 0),
        "socket",
    );
    errdefer sys.close(socket);
    var address = linux.sockaddr.un{ .family = linux.AF.UNIX, .path = [_]u8{0} ** 108 };
    const short = try std.fmt.bufPrint(&address.path, "{s}/l", .{dir_path});
    try testing.expect(short.len < address.path.len);
    _ = try ok(linux.bind(socket, @ptrCast(&address), @sizeOf(linux.sockaddr.un)));
    _ = try ok(linux.listen(socket, 8));
    if (!std.mem.eql(u8, name, "l")) try dir.rename("l", name);
    return socket;
}

fn accept(listener: i32) !i32 {
    return @intCast(try ok(linux.accept4(listener, null, null, linux.SOCK.CLOEXEC)));
}

const TempDir = struct {
    tmp: testing.TmpDir,
    buffer: [std.fs.max_path_bytes]u8,
    path: []const u8,

    fn init(self: *TempDir) !void {
        self.tmp = testing.tmpDir(.{});
        self.path = try self.tmp.dir.realpath(".", &self.buffer);
    }

    fn join(self: *const TempDir, out: []u8, name: []const u8) ![]const u8 {
        return std.fmt.bufPrint(out, "{s}/{s}", .{ self.path, name });
    }
};

test "net: connect_unix reaches a listener by a short path" {
    var dir: TempDir = undefined;
    try dir.init();
    defer dir.tmp.cleanup();
    const listener = try listen_unix(dir.tmp.dir, dir.path, "service.sock");
    defer sys.close(listener);

    var buffer: [std.fs.max_path_bytes]u8 = undefined;
    const path = try dir.join(&buffer, "service.sock");
    try testing.expect(path.len < 108);
    const client = try net.connect_unix(path);
    defer sys.close(client);
    const server = try accept(listener);
    defer sys.close(server);
    try expect_cloexec(client);
    try expect_round_trip(client, server);
}

test "net: connect_unix reaches listeners whose paths are 108 bytes or more" {
    var dir: TempDir = undefined;
    try dir.init();
    defer dir.tmp.cleanup();
    // Long through its directories, and long through the name alone (up to NAME_MAX).
    const deep = "d" ** 60 ++ "/" ++ "e" ** 60 ++ "/" ++ "f" ** 60;
    try dir.tmp.dir.makePath(deep);
    const names = [_][]const u8{ deep ++ "/s", "n" ** 250 };
    for (names) |name| {
        const listener = try listen_unix(dir.tmp.dir, dir.path, name);
        defer sys.close(listener);
        var buffer: [std.fs.max_path_bytes]u8 = undefined;
        const path = try dir.join(&buffer, name);
        try testing.expect(path.len >= 108);
        const client = try net.connect_unix(path);
        defer sys.close(client);
        const server = try accept(listener);
        defer sys.close(server);
        try expect_cloexec(client);
        try expect_round_trip(client, server);
    }
    // Exactly at the boundary: a path of 108 bytes leaves no room for sun_path's NUL.
    var buffer: [std.fs.max_path_bytes]u8 = undefined;
    const prefix_len = dir.path.len + 1;
    if (prefix_len < 100) {
        const name_len = 108 - prefix_len;
        var name_buffer: [108]u8 = undefined;
        @memset(name_buffer[0..name_len], 'b');
        const name = name_buffer[0..name_len];
        const listener = try listen_unix(dir.tmp.dir, dir.path, name);
        defer sys.close(listener);
        const path = try dir.join(&buffer, name);
        try testing.expectEqual(@as(usize, 108), path.len);
        const client = try net.connect_unix(path);
        defer sys.close(client);
        const server = try accept(listener);
        defer sys.close(server);
        try expect_round_trip(client, server);
    }
}

test "net: connect_unix failures name the path and the errno" {
    var dir: TempDir = undefined;
    try dir.init();
    defer dir.tmp.cleanup();
    var buffer: [std.fs.max_path_bytes]u8 = undefined;

    const missing = try dir.join(&buffer, "missing.sock");
    try testing.expectError(error.Fail, net.connect_unix(missing));
    try expect_failure(.NOENT, &.{ missing, "NOENT" });

    const long_missing = try dir.join(&buffer, "m" ** 150);
    try testing.expectError(error.Fail, net.connect_unix(long_missing));
    try expect_failure(.NOENT, &.{ "m" ** 150, "NOENT" });

    // A socket file whose listener has gone: nobody accepts.
    const listener = try listen_unix(dir.tmp.dir, dir.path, "gone.sock");
    sys.close(listener);
    const gone = try dir.join(&buffer, "gone.sock");
    try testing.expectError(error.Fail, net.connect_unix(gone));
    try expect_failure(.CONNREFUSED, &.{ gone, "CONNREFUSED" });

    const long_gone_listener = try listen_unix(dir.tmp.dir, dir.path, "g" ** 150);
    sys.close(long_gone_listener);
    try testing.expectError(error.Fail, net.connect_unix(try dir.join(&buffer, "g" ** 150)));
    try expect_failure(.CONNREFUSED, &.{ "g" ** 150, "CONNREFUSED" });

    // A regular file is no socket.
    (try dir.tmp.dir.createFile("plain", .{})).close();
    try testing.expectError(error.Fail, net.connect_unix(try dir.join(&buffer, "plain")));
    try expect_failure(.CONNREFUSED, &.{"plain"});

    try testing.expectError(error.Fail, net.connect_unix(""));
    try expect_failure(.NOENT, &.{"empty path"});
    try testing.expectError(error.Fail, net.connect_unix("/tmp/a\x00b"));
    try expect_failure(.INVAL, &.{"NUL"});

    // A path too long for the kernel keeps the errno name in the (bounded) message.
    const huge = "/" ++ "x" ** 5000;
    try testing.expectError(error.Fail, net.connect_unix(huge));
    try expect_failure(.NAMETOOLONG, &.{ "...", "NAMETOOLONG" });
}

/// A TCP listener on an ephemeral port of `host`, or null when the host cannot have one here
/// (no IPv6 in this kernel or network namespace).
fn listen_tcp(host: []const u8) !?struct { socket: i32, port: u16 } {
    var address = try std.net.Address.resolveIp(host, 0);
    const rc = linux.socket(address.any.family, linux.SOCK.STREAM | linux.SOCK.CLOEXEC, 0);
    switch (sys.errno_of(rc)) {
        .SUCCESS => {},
        .AFNOSUPPORT, .PROTONOSUPPORT => return null,
        else => |errno| return diag.fail(errno, "socket: {s}", .{@tagName(errno)}),
    }
    const socket: i32 = @intCast(rc);
    errdefer sys.close(socket);
    switch (sys.errno_of(linux.bind(socket, &address.any, address.getOsSockLen()))) {
        .SUCCESS => {},
        .ADDRNOTAVAIL, .AFNOSUPPORT => {
            sys.close(socket);
            return null;
        },
        else => |errno| return diag.fail(errno, "bind: {s}", .{@tagName(errno)}),
    }
    _ = try ok(linux.listen(socket, 8));
    var len: linux.socklen_t = address.getOsSockLen();
    _ = try ok(linux.getsockname(socket, &address.any, &len));
    return .{ .socket = socket, .port = address.getPort() };
}

fn expect_tcp_service(host: []const u8) !void {
    const listener = (try listen_tcp(host)) orelse {
        std.debug.print("no TCP listener on {s} here: skipped\n", .{host});
        return error.SkipZigTest;
    };
    defer sys.close(listener.socket);
    const client = try net.connect_tcp(host, listener.port);
    defer sys.close(client);
    const server = try accept(listener.socket);
    defer sys.close(server);
    try expect_cloexec(client);
    var nodelay: i32 = 0;
    var len: linux.socklen_t = @sizeOf(i32);
    _ = try ok(
        linux.getsockopt(
            client,
            linux.IPPROTO.TCP,
            linux.TCP.NODELAY,
            std.mem.asBytes(&nodelay),
            &len,
        ),
    );
    try testing.expect(nodelay != 0);
    try expect_round_trip(client, server);
}

test "net: connect_tcp reaches an IPv4 loopback listener with TCP_NODELAY" {
    try expect_tcp_service("127.0.0.1");
}

test "net: connect_tcp reaches an IPv6 loopback listener (skipped without IPv6)" {
    try expect_tcp_service("::1");
}

test "net: connect_tcp reports a refused connection with the address" {
    // Bound and never listening: the port is ours, so the refusal cannot race another process.
    var address = try std.net.Address.parseIp4("127.0.0.1", 0);
    const socket = try sys.fd(
        linux.socket(linux.AF.INET, linux.SOCK.STREAM | linux.SOCK.CLOEXEC, 0),
        "socket",
    );
    defer sys.close(socket);
    _ = try ok(linux.bind(socket, &address.any, address.getOsSockLen()));
    var len: linux.socklen_t = address.getOsSockLen();
    _ = try ok(linux.getsockname(socket, &address.any, &len));
    try testing.expectError(error.Fail, net.connect_tcp("127.0.0.1", address.getPort()));
    var expected: [64]u8 = undefined;
    try expect_failure(
        .CONNREFUSED,
        &.{ try std.fmt.bufPrint(&expected, "127.0.0.1:{d}", .{address.getPort()}), "CONNREFUSED" },
    );
}

test "net: hosts must be numeric; ':' or '%' means IPv6" {
    const bad = [_][]const u8{
        "",         "localhost", "example.com", "1.2.3",      "1.2.3.4.5", "256.0.0.1",
        "01.2.3.4", " 1.2.3.4",  "1.2.3.4 ",    "1.2.3.4%lo", "::g",       "1:2:3:4:5:6:7:8:9",
        "fe80::1%", "::1%a b",   "[::1]",       "%1",
    };
    for (bad) |host| {
        try testing.expectError(error.Fail, net.parse_host(host, 80));
        try expect_failure(.INVAL, &.{"TCP service"});
        try testing.expectError(error.Fail, net.connect_tcp(host, 80));
    }
    try testing.expectError(error.Fail, net.connect_tcp("127.0.0.1", 0));
    try expect_failure(.INVAL, &.{"port 0"});

    const v4 = try net.parse_host("10.1.2.3", 8080);
    try testing.expectEqual(@as(u16, linux.AF.INET), v4.any.family);
    try testing.expectEqual(@as(u16, 8080), v4.getPort());
    const v6 = try net.parse_host("fe80::1%7", 22);
    try testing.expectEqual(@as(u16, linux.AF.INET6), v6.any.family);
    try testing.expectEqual(@as(u32, 7), v6.in6.sa.scope_id);
    const mapped = try net.parse_host("::ffff:127.0.0.1", 22);
    try testing.expectEqual(@as(u16, linux.AF.INET6), mapped.any.family);

    // A scope given as an interface name, when this host has a loopback interface to name.
    if (std.fs.accessAbsolute("/sys/class/net/lo", .{})) {
        const named = try net.parse_host("fe80::1%lo", 22);
        try testing.expect(named.in6.sa.scope_id > 0);
    } else |_| {}
    try testing.expectError(error.Fail, net.parse_host("fe80::1%nosuchif0", 22));
}

test "net: socketpair_stream carries bytes both ways" {
    const fds = try net.socketpair_stream();
    defer for (fds) |descriptor| sys.close(descriptor);
    try expect_cloexec(fds[0]);
    try expect_cloexec(fds[1]);
    try expect_round_trip(fds[0], fds[1]);
    try expect_round_trip(fds[1], fds[0]);
}

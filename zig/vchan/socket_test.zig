//! In-process tests of the vchan-socket-compatible vchan: both ends (or one end and a plain unix
//! socket standing in for upstream's Python peers) live in this test process, single-threaded,
//! so every transfer is driven by the non-blocking calls the backend offers.
const std = @import("std");
const test_stream = @import("test_stream.zig");
const stream = test_stream.stream;
const fill_pattern = test_stream.fill_pattern;
const expect_pattern = test_stream.expect_pattern;
const testing = std.testing;
const linux = std.os.linux;
const constants = @import("../constants.zig");
const diag = @import("../diag.zig");
const socket = @import("socket.zig");
const Vchan = socket.Vchan;

const Pair = struct {
    server: Vchan,
    client: Vchan,
    dir_buffer: [std.fs.max_path_bytes]u8,
    dir: []const u8,
    tmp: testing.TmpDir,

    /// Both ends, not yet connected; the client's rings are as small as the server's.
    fn init(pair: *Pair, ring_bytes: u32) !void {
        pair.tmp = testing.tmpDir(.{});
        pair.dir = try pair.tmp.dir.realpath(".", &pair.dir_buffer);
        try pair.server.server_init(
            .{
                .dir = pair.dir,
                .local_domain = 0,
                .remote_domain = 7,
                .port = 513,
                .read_min = ring_bytes,
                .write_min = ring_bytes,
            },
        );
        try pair.client.client_init(
            .{
                .dir = pair.dir,
                .local_domain = 7,
                .remote_domain = 0,
                .port = 513,
                .read_min = ring_bytes,
                .write_min = ring_bytes,
            },
        );
    }

    fn connect(pair: *Pair, ring_bytes: u32) !void {
        try pair.init(ring_bytes);
        try testing.expectEqual(@as(u32, 0), try pair.client.finish());
        try pair.server.connect_wait(1000);
        try testing.expectEqual(constants.State.connected, pair.server.state());
        try testing.expectEqual(constants.State.connected, pair.client.state());
    }

    fn deinit(pair: *Pair) void {
        pair.server.close();
        pair.client.close();
        pair.tmp.cleanup();
    }
};

fn poll_readable(descriptor: i32, timeout_ms: i32) !bool {
    var poll_fd = [_]linux.pollfd{.{ .fd = descriptor, .events = linux.POLL.IN, .revents = 0 }};
    const rc = linux.poll(&poll_fd, 1, timeout_ms);
    try testing.expectEqual(linux.E.SUCCESS, linux.E.init(rc));
    return rc == 1;
}

fn expect_errno(code: linux.E) !void {
    try testing.expectEqual(@as(i32, @intFromEnum(code)), diag.errno());
}

test "socket: a position-derived stream both ways through 4096-byte rings" {
    var pair: Pair = undefined;
    try pair.connect(4096);
    defer pair.deinit();
    inline for (.{ &pair.server, &pair.client }) |end| {
        try testing.expectEqual(@as(u32, 4096), end.read_ring_bytes());
        try testing.expectEqual(@as(u32, 4096), end.write_ring_bytes());
    }
    // Upstream leaves the socket file behind and so do we (see socket.zig).
    try pair.tmp.dir.access("vchan.0.7.513.sock", .{});

    try stream(&pair.client, &pair.server, 3 * 4096 + 12345);
    try stream(&pair.server, &pair.client, 3 * 4096 + 777);
    // More than the kernel's socket buffers hold, so both rings fill and wrap many times.
    try stream(&pair.client, &pair.server, 3 << 20);
    try stream(&pair.server, &pair.client, 3 << 20);
    try testing.expect(pair.client.stats.kicks > 0);
    // Every byte of the four streams is counted once on each side.
    const client_to_server: u64 = 3 * 4096 + 12345 + (3 << 20);
    const server_to_client: u64 = 3 * 4096 + 777 + (3 << 20);
    try testing.expectEqual(client_to_server, pair.client.stats.bytes_written);
    try testing.expectEqual(client_to_server, pair.server.stats.bytes_read);
    try testing.expectEqual(server_to_client, pair.server.stats.bytes_written);
    try testing.expectEqual(server_to_client, pair.client.stats.bytes_read);
}

test "socket: blocking ends in two threads carry a stream, and the close delivers the tail" {
    var pair: Pair = undefined;
    try pair.connect(4096);
    defer pair.deinit();
    const total: u64 = (1 << 20) + 17;
    const Writer = struct {
        failed: bool = false,

        fn run(self: *@This(), vchan: *Vchan) void {
            var chunk: [3001]u8 = undefined;
            var sent: u64 = 0;
            while (sent < total) {
                const count: usize = @intCast(@min(chunk.len, total - sent));
                fill_pattern(chunk[0..count], sent);
                // Blocking write: all of it, however slowly the reader drains.
                const written = vchan.write(chunk[0..count]) catch {
                    self.failed = true;
                    return;
                };
                if (written != count) self.failed = true;
                sent += written;
            }
            vchan.close();
        }
    };
    var writer = Writer{};
    const thread = try std.Thread.spawn(.{}, Writer.run, .{ &writer, &pair.server });
    var target: [1000]u8 = undefined;
    var received: u64 = 0;
    while (total - received >= target.len) {
        try testing.expectEqual(@as(u32, target.len), try pair.client.recv(&target));
        try expect_pattern(&target, received);
        received += target.len;
    }
    while (received < total) {
        const count = try pair.client.read(&target);
        try expect_pattern(target[0..count], received);
        received += count;
    }
    thread.join();
    try testing.expect(!writer.failed);
    try testing.expectError(error.Fail, pair.client.read(&target));
    try expect_errno(.PIPE);
}

test "socket: bytes written before the connection exists are delivered" {
    var tmp = testing.tmpDir(.{});
    defer tmp.cleanup();
    var dir_buffer: [std.fs.max_path_bytes]u8 = undefined;
    const dir = try tmp.dir.realpath(".", &dir_buffer);
    var server: Vchan = undefined;
    try server.server_init(
        .{
            .dir = dir,
            .local_domain = 0,
            .remote_domain = 7,
            .port = 513,
            .read_min = 4096,
            .write_min = 4096,
        },
    );
    defer server.close();
    try testing.expectEqual(@as(u32, 4096), server.buffer_space());
    try testing.expectEqual(@as(u32, 5), try server.write("hello"));
    try testing.expectEqual(@as(u32, 4091), server.buffer_space());
    try testing.expectEqual(constants.State.waiting, server.state());

    var client: Vchan = undefined;
    try client.client_init(.{ .dir = dir, .local_domain = 7, .remote_domain = 0, .port = 513 });
    defer client.close();
    // A client asking for no particular size gets 64 KiB rings.
    try testing.expectEqual(@as(u32, 65536), client.read_ring_bytes());
    try testing.expectEqual(@as(u32, 65536), client.write_ring_bytes());
    try testing.expectEqual(@as(u32, 5), try client.write("early"));
    try testing.expectEqual(constants.State.waiting, client.state());

    try client.connect_wait(1000);
    try server.connect_wait(1000);
    var buffer: [5]u8 = undefined;
    try testing.expectEqual(@as(u32, 5), try server.recv(&buffer));
    try testing.expectEqualStrings("early", &buffer);
    try testing.expectEqual(@as(u32, 5), try client.recv(&buffer));
    try testing.expectEqualStrings("hello", &buffer);
}

test "socket: a poll loop over fd_for_select drives connect and data, and is quiet when idle" {
    var tmp = testing.tmpDir(.{});
    defer tmp.cleanup();
    var dir_buffer: [std.fs.max_path_bytes]u8 = undefined;
    const dir = try tmp.dir.realpath(".", &dir_buffer);

    // The client comes first: its immediate retry tick finds nobody.
    var client: Vchan = undefined;
    try client.client_init(.{ .dir = dir, .local_domain = 7, .remote_domain = 0, .port = 514 });
    defer client.close();
    const client_fd = client.fd_for_select();
    try testing.expect(try poll_readable(client_fd, 1000));
    try client.wait_event(0);
    try testing.expectEqual(constants.State.waiting, client.state());

    var server: Vchan = undefined;
    try server.server_init(.{ .dir = dir, .local_domain = 0, .remote_domain = 7, .port = 514 });
    defer server.close();
    const server_fd = server.fd_for_select();
    // The server's socket appearing wakes the client (inotify, or the retry timer).
    var rounds: u32 = 0;
    while (client.state() == .waiting) : (rounds += 1) {
        try testing.expect(rounds < 50);
        try testing.expect(try poll_readable(client_fd, 1000));
        try client.wait_event(0);
    }
    try testing.expect(try poll_readable(server_fd, 1000));
    try server.wait_event(0);
    try testing.expectEqual(constants.State.connected, server.state());
    // One fd from init to close, whatever the state.
    try testing.expectEqual(client_fd, client.fd_for_select());
    try testing.expectEqual(server_fd, server.fd_for_select());

    try testing.expect(!try poll_readable(server_fd, 0));
    try testing.expect(!try poll_readable(client_fd, 0));
    try testing.expectEqual(@as(u32, 1), try client.write("x"));
    try testing.expect(try poll_readable(server_fd, 1000));
    try testing.expectEqual(@as(u32, 0), server.data_ready());
    try server.wait_event(0);
    try testing.expectEqual(@as(u32, 1), server.data_ready());
    var buffer: [4]u8 = undefined;
    try testing.expectEqual(@as(u32, 1), try server.read(&buffer));
    try testing.expect(!try poll_readable(server_fd, 0));
}

test "socket: a closing peer's data all arrives, then DISCONNECTED and PIPE, without spinning" {
    var pair: Pair = undefined;
    try pair.connect(4096);
    defer pair.deinit();
    var source: [10000]u8 = undefined;
    fill_pattern(&source, 0);
    pair.server.blocking = false;
    // The kernel's socket buffer takes what the rings do not.
    try testing.expectEqual(@as(u32, source.len), try pair.server.write(&source));
    pair.server.close();

    // The read ring is full and the peer is gone, but not everything has arrived yet: still
    // connected, and with nothing to do until we read, fd_for_select stays quiet.
    try testing.expectEqual(constants.State.connected, pair.client.state());
    try testing.expectEqual(@as(u32, 4096), pair.client.data_ready());
    try testing.expect(!try poll_readable(pair.client.fd_for_select(), 0));

    var target: [1000]u8 = undefined;
    var received: u64 = 0;
    while (received < source.len) {
        const count = try pair.client.read(&target);
        try expect_pattern(target[0..count], received);
        received += count;
    }
    try testing.expectEqual(constants.State.disconnected, pair.client.state());
    try testing.expect(std.mem.indexOf(u8, pair.client.reason(), "closed") != null);
    try testing.expectEqual(@as(u32, 0), pair.client.data_ready());
    try testing.expectEqual(@as(u32, 0), pair.client.buffer_space());
    try testing.expect(!try poll_readable(pair.client.fd_for_select(), 0));
    try testing.expectError(error.Fail, pair.client.read(&target));
    try expect_errno(.PIPE);
    try testing.expectError(error.Fail, pair.client.recv(target[0..1]));
    try expect_errno(.PIPE);
    try testing.expectError(error.Fail, pair.client.write("x"));
    try expect_errno(.PIPE);
    try testing.expectError(error.Fail, pair.client.send("x"));
    try expect_errno(.PIPE);
    // wait returns at once on a disconnected vchan instead of sleeping forever.
    try pair.client.wait();
}

test "socket: writing to a peer that left fails with PIPE, also when blocking" {
    var pair: Pair = undefined;
    try pair.connect(4096);
    defer pair.deinit();
    pair.client.close();
    var source: [3 * 4096]u8 = undefined;
    fill_pattern(&source, 0);
    try testing.expectError(error.Fail, pair.server.write(&source));
    try expect_errno(.PIPE);
    try testing.expectEqual(@as(u32, 0), pair.server.buffer_space());
    try testing.expectEqual(constants.State.disconnected, pair.server.state());
}

test "socket: a plain unix socket is a peer, so there is no framing" {
    var tmp = testing.tmpDir(.{});
    defer tmp.cleanup();
    var dir_buffer: [std.fs.max_path_bytes]u8 = undefined;
    const dir = try tmp.dir.realpath(".", &dir_buffer);
    var path_buffer: [std.fs.max_path_bytes]u8 = undefined;
    // A qrexec header as the Python tests pack it: struct.pack("<LL", type, len), then a body.
    const message = [_]u8{ 0x90, 0x01, 0, 0, 4, 0, 0, 0 } ++ "abcd".*;

    {
        // Our server, a raw client: the name is vchan.<server>.<client>.<port>.sock.
        var server: Vchan = undefined;
        try server.server_init(
            .{
                .dir = dir,
                .local_domain = 42,
                .remote_domain = 0,
                .port = 512,
                .read_min = 4096,
                .write_min = 4096,
            },
        );
        defer server.close();
        const raw = try std.net.connectUnixSocket(
            try std.fmt.bufPrint(&path_buffer, "{s}/vchan.42.0.512.sock", .{dir}),
        );
        defer raw.close();
        try server.connect_wait(1000);
        try raw.writeAll(&message);
        var header: [8]u8 = undefined;
        try testing.expectEqual(@as(u32, 8), try server.recv(&header));
        try testing.expectEqualSlices(u8, message[0..8], &header);
        var body: [4]u8 = undefined;
        try testing.expectEqual(@as(u32, 4), try server.recv(&body));
        try testing.expectEqualStrings("abcd", &body);

        try testing.expectEqual(@as(u32, message.len), try server.send(&message));
        server.close();
        var echoed: [64]u8 = undefined;
        try raw.reader().readNoEof(echoed[0..message.len]);
        try testing.expectEqualSlices(u8, &message, echoed[0..message.len]);
        // Exactly our bytes, then a clean EOF.
        try testing.expectEqual(@as(usize, 0), try raw.read(&echoed));
    }
    {
        // A raw server, our client: the client names the socket (remote, local, port).
        const address = try std.net.Address.initUnix(
            try std.fmt.bufPrint(&path_buffer, "{s}/vchan.43.42.1024.sock", .{dir}),
        );
        var listener = try address.listen(.{});
        defer listener.deinit();
        var client: Vchan = undefined;
        try client.client_init(
            .{ .dir = dir, .local_domain = 42, .remote_domain = 43, .port = 1024 },
        );
        defer client.close();
        try client.connect_wait(1000);
        const accepted = try listener.accept();
        try testing.expectEqual(@as(u32, message.len), try client.send(&message));
        var received: [message.len]u8 = undefined;
        try accepted.stream.reader().readNoEof(&received);
        try testing.expectEqualSlices(u8, &message, &received);
        try accepted.stream.writeAll("pong");
        accepted.stream.close();
        var reply: [16]u8 = undefined;
        try testing.expectEqual(@as(u32, 4), try client.recv(reply[0..4]));
        try testing.expectEqualStrings("pong", reply[0..4]);
        try testing.expectError(error.Fail, client.read(&reply));
        try expect_errno(.PIPE);
    }
}

test "socket: recv and send larger than the ring fail at once with MSGSIZE" {
    var pair: Pair = undefined;
    try pair.connect(4096);
    defer pair.deinit();
    var big: [4097]u8 = undefined;
    fill_pattern(&big, 0);
    try testing.expectError(error.Fail, pair.client.send(&big));
    try expect_errno(.MSGSIZE);
    try testing.expectError(error.Fail, pair.server.recv(&big));
    try expect_errno(.MSGSIZE);
    try testing.expectEqual(@as(u32, 4096), try pair.client.send(big[0..4096]));
    try testing.expectEqual(@as(u32, 4096), try pair.server.recv(big[0..4096]));
    try expect_pattern(big[0..4096], 0);
}

test "socket: connect_wait gives up with TIMEDOUT" {
    var tmp = testing.tmpDir(.{});
    defer tmp.cleanup();
    var dir_buffer: [std.fs.max_path_bytes]u8 = undefined;
    const dir = try tmp.dir.realpath(".", &dir_buffer);

    var client: Vchan = undefined;
    try client.client_init(.{ .dir = dir, .local_domain = 7, .remote_domain = 0, .port = 515 });
    defer client.close();
    const start = std.time.milliTimestamp();
    try testing.expectError(error.Fail, client.connect_wait(150));
    try expect_errno(.TIMEDOUT);
    try testing.expect(std.time.milliTimestamp() - start >= 150);
    try testing.expectEqual(constants.State.waiting, client.state());

    var server: Vchan = undefined;
    try server.server_init(.{ .dir = dir, .local_domain = 0, .remote_domain = 8, .port = 515 });
    defer server.close();
    try testing.expectError(error.Fail, server.connect_wait(20));
    try expect_errno(.TIMEDOUT);
}

test "socket: loopback, oversized rings and over-long paths are refused" {
    var vchan: Vchan = undefined;
    try testing.expectError(
        error.Fail,
        vchan.client_init(.{ .dir = "/tmp", .local_domain = 4, .remote_domain = 4, .port = 1 }),
    );
    try expect_errno(.INVAL);
    try testing.expectError(
        error.Fail,
        vchan.server_init(
            .{
                .dir = "/tmp",
                .local_domain = 4,
                .remote_domain = 5,
                .port = 1,
                .read_min = (1 << 20) + 1,
            },
        ),
    );
    try expect_errno(.MSGSIZE);
    const long = "/tmp/" ++ "d" ** 120;
    try testing.expectError(
        error.Fail,
        vchan.client_init(.{ .dir = long, .local_domain = 4, .remote_domain = 5, .port = 1 }),
    );
    try expect_errno(.NAMETOOLONG);
}

/// inotify instances this process holds now (fds whose link reads "anon_inode:inotify").
fn inotify_instances() !u32 {
    var dir = try std.fs.openDirAbsolute("/proc/self/fd", .{ .iterate = true });
    defer dir.close();
    var iterator = dir.iterate();
    var count: u32 = 0;
    var link_buffer: [64]u8 = undefined;
    while (try iterator.next()) |entry| {
        const link = dir.readLink(entry.name, &link_buffer) catch continue;
        if (std.mem.eql(u8, link, "anon_inode:inotify")) count += 1;
    }
    return count;
}

test "socket: pending clients share one inotify instance, and a server still wakes each" {
    var tmp = testing.tmpDir(.{});
    defer tmp.cleanup();
    var dir_buffer: [std.fs.max_path_bytes]u8 = undefined;
    const dir = try tmp.dir.realpath(".", &dir_buffer);
    const before = try inotify_instances();
    // More pending clients than a user's default inotify instances (128).
    const pending = 150;
    var clients: [pending]Vchan = undefined;
    for (&clients, 0..) |*client, index| {
        const port: i32 = @intCast(600 + index);
        try client.client_init(.{
            .dir = dir,
            .local_domain = 7,
            .remote_domain = 0,
            .port = port,
        });
    }
    defer for (&clients) |*client| client.close();
    try testing.expect(try inotify_instances() <= @max(before, 1));
    // The one watch still reaches the client whose server appears (port 600 + 77).
    var server: Vchan = undefined;
    try server.server_init(.{ .dir = dir, .local_domain = 0, .remote_domain = 7, .port = 677 });
    defer server.close();
    const client = &clients[77];
    var rounds: u32 = 0;
    while (client.phase != .connected) : (rounds += 1) {
        try testing.expect(rounds < 100);
        try client.wait_event(50);
    }
    try testing.expectEqual(@as(u32, 0), try client.finish());
}

//! In-process tests of the shm vchan: both ends live in this test process, connected through the
//! real rendezvous socket and memfd, so everything but a second process is exercised.
const std = @import("std");
const stream = @import("test_stream.zig").stream;
const testing = std.testing;
const constants = @import("../constants.zig");
const diag = @import("../diag.zig");
const shm = @import("shm.zig");
const Vchan = shm.Vchan;

const Pair = struct {
    server: Vchan,
    client: Vchan,
    dir_buffer: [std.fs.max_path_bytes]u8,
    tmp: testing.TmpDir,

    fn deinit(self: *Pair) void {
        self.server.close();
        self.client.close();
        self.tmp.cleanup();
    }
};

const PairOptions = struct {
    read_min: u32 = 1024,
    write_min: u32 = 1024,
    spin_ns: u32 = 0,
    client_pages_max: u32 = 0,
    /// The client starts first (and offers itself, when it has no page cap).
    client_first: bool = false,
};

fn connect_pair(pair: *Pair, pair_options: PairOptions) !void {
    pair.tmp = testing.tmpDir(.{});
    const dir = try pair.tmp.dir.realpath(".", &pair.dir_buffer);
    if (pair_options.client_first) {
        try init_client(pair, dir, pair_options);
        init_server(pair, dir, pair_options) catch |err| {
            pair.client.close();
            return err;
        };
    } else {
        try init_server(pair, dir, pair_options);
        init_client(pair, dir, pair_options) catch |err| {
            pair.server.close();
            return err;
        };
    }
    var attempts: u32 = 0;
    while (try pair.client.finish() != 0) : (attempts += 1) {
        try testing.expect(attempts < 100);
        try pair.server.wait_event(10);
    }
    try pair.server.wait_event(0);
    try testing.expectEqual(constants.State.connected, pair.server.state());
    try testing.expectEqual(constants.State.connected, pair.client.state());
}

fn init_server(pair: *Pair, dir: []const u8, pair_options: PairOptions) !void {
    try pair.server.server_init(
        .{
            .dir = dir,
            .local_domain = 0,
            .remote_domain = 7,
            .port = 513,
            .read_min = pair_options.read_min,
            .write_min = pair_options.write_min,
            .spin_ns = pair_options.spin_ns,
        },
    );
}

fn init_client(pair: *Pair, dir: []const u8, pair_options: PairOptions) !void {
    try pair.client.client_init(
        .{
            .dir = dir,
            .local_domain = 7,
            .remote_domain = 0,
            .port = 513,
            .spin_ns = pair_options.spin_ns,
            .pages_max = pair_options.client_pages_max,
        },
    );
}

fn exists(dir: std.fs.Dir, name: []const u8) bool {
    dir.access(name, .{}) catch return false;
    return true;
}

test "shm: a client that came first is handed the rings by the server, in one step" {
    var pair: Pair = undefined;
    pair.tmp = testing.tmpDir(.{});
    const dir = try pair.tmp.dir.realpath(".", &pair.dir_buffer);
    try init_client(&pair, dir, .{});
    try testing.expect(exists(pair.tmp.dir, "shmoffer.0.7.513.sock"));
    try init_server(&pair, dir, .{});
    defer pair.deinit();
    // The server answered the offer: it never listed a socket of its own.
    try testing.expect(!exists(pair.tmp.dir, "shmvchan.0.7.513.sock"));
    try testing.expectEqual(@as(u32, 0), try pair.client.finish());
    try testing.expect(!exists(pair.tmp.dir, "shmoffer.0.7.513.sock"));
    try testing.expectEqual(constants.State.connected, pair.server.state());
    try testing.expectEqual(@as(u32, 5), try pair.client.send("hello"));
    var buffer: [16]u8 = undefined;
    try testing.expectEqual(@as(u32, 5), try pair.server.recv(buffer[0..5]));
    try testing.expectEqualStrings("hello", buffer[0..5]);
    try testing.expectEqual(@as(u32, 3), try pair.server.send("abc"));
    try testing.expectEqual(@as(u32, 3), try pair.client.recv(buffer[0..3]));
    try testing.expectEqualStrings("abc", buffer[0..3]);
}

test "shm: a capped client offers nothing, and a dead offer is passed over" {
    // A page cap needs the HELLO's check: the client waits for the server's socket instead.
    var capped: Pair = undefined;
    try connect_pair(&capped, .{ .client_first = true, .client_pages_max = 64 });
    capped.deinit();
    // An offer left by a client that died: the server lists its socket as if there were none.
    var pair: Pair = undefined;
    pair.tmp = testing.tmpDir(.{});
    const dir = try pair.tmp.dir.realpath(".", &pair.dir_buffer);
    const linux = std.os.linux;
    const dead = linux.socket(linux.AF.UNIX, linux.SOCK.SEQPACKET | linux.SOCK.CLOEXEC, 0);
    var path_buffer: [std.fs.max_path_bytes]u8 = undefined;
    const path = try std.fmt.bufPrint(&path_buffer, "{s}/shmoffer.0.7.513.sock", .{dir});
    var address = linux.sockaddr.un{ .family = linux.AF.UNIX, .path = [_]u8{0} ** 108 };
    @memcpy(address.path[0..path.len], path);
    const bound = linux.bind(@intCast(dead), @ptrCast(&address), @sizeOf(linux.sockaddr.un));
    try testing.expectEqual(@as(usize, 0), bound);
    _ = linux.close(@intCast(dead));
    try init_server(&pair, dir, .{});
    try testing.expect(exists(pair.tmp.dir, "shmvchan.0.7.513.sock"));
    init_client(&pair, dir, .{}) catch |err| {
        pair.server.close();
        return err;
    };
    defer pair.deinit();
    var attempts: u32 = 0;
    while (try pair.client.finish() != 0) : (attempts += 1) {
        try testing.expect(attempts < 100);
        try pair.server.wait_event(10);
    }
    try testing.expectEqual(@as(u32, 2), try pair.client.send("ok"));
    var buffer: [2]u8 = undefined;
    try testing.expectEqual(@as(u32, 2), try pair.server.recv(&buffer));
}

test "shm: connect, exchange both ways, close with data left" {
    var pair: Pair = undefined;
    try connect_pair(&pair, .{});
    defer pair.deinit();
    try testing.expectEqual(@as(u32, 1024), pair.server.read_ring.size);
    try testing.expectEqual(@as(u32, 2048), pair.server.write_ring.size);
    try testing.expectEqual(@as(u32, 2048), pair.client.read_ring.size);
    // The rendezvous socket is single-use: gone once a client came.
    try testing.expectError(error.FileNotFound, pair.tmp.dir.access("shmvchan.0.7.513.sock", .{}));

    try testing.expectEqual(@as(u32, 5), try pair.client.send("hello"));
    var buffer: [16]u8 = undefined;
    try testing.expectEqual(@as(u32, 5), try pair.server.recv(buffer[0..5]));
    try testing.expectEqualStrings("hello", buffer[0..5]);
    try testing.expectEqual(@as(u32, 3), try pair.server.write("abc"));
    try testing.expectEqual(@as(u32, 3), pair.client.data_ready());
    pair.server.close();
    // The client still gets what the server wrote before leaving, then the end.
    try testing.expectEqual(constants.State.disconnected, pair.client.state());
    try testing.expectEqual(@as(u32, 3), try pair.client.read(&buffer));
    try testing.expectEqualStrings("abc", buffer[0..3]);
    try testing.expectError(error.Fail, pair.client.read(&buffer));
    try testing.expectEqual(@as(i32, @intFromEnum(std.os.linux.E.PIPE)), diag.errno());
    try testing.expectError(error.Fail, pair.client.write("x"));
}

test "shm: every ring order carries a position-derived stream" {
    const sizes = [_][2]u32{
        .{ 1024, 1024 },
        .{ 2048, 1024 },
        .{ 2048, 2048 },
        .{ 4096, 4096 },
        .{ 65536, 16384 },
        .{ 1 << 20, 1 << 20 },
    };
    for (sizes) |size| {
        var pair: Pair = undefined;
        try connect_pair(&pair, .{ .read_min = size[0], .write_min = size[1] });
        defer pair.deinit();
        try testing.expect(pair.server.read_ring.size >= size[0]);
        try stream(&pair.client, &pair.server, 3 * @as(u64, pair.server.read_ring.size) + 12345);
        try stream(&pair.server, &pair.client, 3 * @as(u64, pair.server.write_ring.size) + 777);
    }
}

test "shm: indices wrap around 2^32" {
    var pair: Pair = undefined;
    try connect_pair(&pair, .{});
    defer pair.deinit();
    pair.server.debug_set_indices(0xffff_f000);
    pair.client.debug_set_indices(0xffff_f000);
    try stream(&pair.client, &pair.server, 64 * 1024);
    try stream(&pair.server, &pair.client, 64 * 1024);
    try testing.expect(pair.server.read_ring.local < 0x1_0000);
    try testing.expect(pair.client.read_ring.local < 0x1_0000);
}

test "shm: notify protocol kicks only when the peer asked" {
    var pair: Pair = undefined;
    try connect_pair(&pair, .{});
    defer pair.deinit();
    const server = &pair.server;
    const client = &pair.client;
    // The client kicked once to announce itself.
    try testing.expectEqual(@as(u32, 1), client.stats.kicks);
    // The server armed NOTIFY_WRITE at init: the client's first write kicks, the second not.
    _ = try client.write("a");
    try testing.expectEqual(@as(u32, 2), client.stats.kicks);
    _ = try client.write("b");
    try testing.expectEqual(@as(u32, 2), client.stats.kicks);
    // data_ready re-arms it.
    try testing.expectEqual(@as(u32, 2), server.data_ready());
    _ = try client.write("c");
    try testing.expectEqual(@as(u32, 3), client.stats.kicks);
    // Reading kicks only if the writer asked to hear about consumption (buffer_space arms it).
    var buffer: [8]u8 = undefined;
    _ = try server.read(&buffer);
    try testing.expectEqual(@as(u32, 0), server.stats.kicks);
    _ = client.buffer_space();
    _ = try client.write("d");
    _ = try server.read(&buffer);
    try testing.expectEqual(@as(u32, 1), server.stats.kicks);
    // The client armed NOTIFY_WRITE when it connected: the server's first write kicks it.
    _ = try server.write("e");
    try testing.expectEqual(@as(u32, 2), server.stats.kicks);
    _ = try server.write("f");
    try testing.expectEqual(@as(u32, 2), server.stats.kicks);
    // Both kicks were queued on the client's socket end: one wakeup took them both.
    try client.wait_event(0);
    try testing.expectEqual(@as(u32, 1), client.stats.wakeups);
}

test "shm: a peer that corrupts indices is disconnected with a reason" {
    const Case = struct { offset: u32, value: u32, victim_reads: bool };
    const cases = [_]Case{
        // Producer claims more than the ring holds.
        .{ .offset = constants.offset_left_prod, .value = 1025, .victim_reads = true },
        // Producer moved backwards (the u32 difference wraps to a huge count).
        .{ .offset = constants.offset_left_prod, .value = 0xffff_fff0, .victim_reads = true },
        // Consumer claims to have read bytes that were never written.
        .{ .offset = constants.offset_right_cons, .value = 4096, .victim_reads = false },
    };
    for (cases) |case| {
        var pair: Pair = undefined;
        try connect_pair(&pair, .{});
        defer pair.deinit();
        try pair.client.debug_poke(case.offset, case.value);
        var buffer: [64]u8 = undefined;
        if (case.victim_reads) {
            try testing.expectError(error.Fail, pair.server.read(&buffer));
            try testing.expectEqual(@as(u32, 0), pair.server.data_ready());
        } else {
            try testing.expectError(error.Fail, pair.server.write("data"));
        }
        try testing.expectEqual(@as(i32, @intFromEnum(std.os.linux.E.PROTO)), diag.errno());
        try testing.expectEqual(constants.State.disconnected, pair.server.state());
        try testing.expect(std.mem.startsWith(u8, pair.server.reason(), "peer protocol error"));
        // Further use keeps failing instead of touching the ring.
        try testing.expectError(error.Fail, pair.server.read(&buffer));
        // The peer's live byte was cleared, as Xen's unmap-notify would.
        try testing.expectEqual(constants.State.disconnected, pair.client.state());
    }
}

test "shm: page cap refuses big rings and names the size that fits" {
    var tmp = testing.tmpDir(.{});
    defer tmp.cleanup();
    var dir_buffer: [std.fs.max_path_bytes]u8 = undefined;
    const dir = try tmp.dir.realpath(".", &dir_buffer);
    var server: Vchan = undefined;
    try testing.expectError(
        error.Fail,
        server.server_init(
            .{
                .dir = dir,
                .local_domain = 0,
                .remote_domain = 3,
                .port = 600,
                .read_min = 1 << 20,
                .write_min = 1 << 20,
                .pages_max = 128,
            },
        ),
    );
    try testing.expectEqual(@as(i32, @intFromEnum(std.os.linux.E.FBIG)), diag.errno());
    try testing.expect(std.mem.indexOf(u8, diag.message(), "513 pages") != null);
    try testing.expect(
        std.mem.indexOf(u8, diag.message(), "131072 bytes in each direction fit") != null,
    );
    try testing.expectError(
        error.Fail,
        server.server_init(
            .{
                .dir = dir,
                .local_domain = 0,
                .remote_domain = 3,
                .port = 600,
                .read_min = (1 << 20) + 1,
                .write_min = 1,
            },
        ),
    );
    try testing.expectEqual(@as(i32, @intFromEnum(std.os.linux.E.MSGSIZE)), diag.errno());

    // A capped client refuses a server whose layout needs more pages.
    var pair: Pair = undefined;
    try testing.expectError(
        error.Fail,
        connect_pair(&pair, .{ .read_min = 65536, .write_min = 65536, .client_pages_max = 32 }),
    );
    try testing.expectEqual(@as(i32, @intFromEnum(std.os.linux.E.FBIG)), diag.errno());
    pair.deinit();
}

test "shm: send and recv larger than the ring fail at once" {
    var pair: Pair = undefined;
    try connect_pair(&pair, .{});
    defer pair.deinit();
    var big: [4096]u8 = undefined;
    try testing.expectError(error.Fail, pair.client.send(big[0..1025]));
    try testing.expectEqual(@as(i32, @intFromEnum(std.os.linux.E.MSGSIZE)), diag.errno());
    try testing.expectError(error.Fail, pair.server.recv(big[0..1025]));
    try testing.expectEqual(@as(u32, 1024), try pair.client.send(big[0..1024]));
    try testing.expectEqual(@as(u32, 1024), try pair.server.recv(big[0..1024]));
}

test "shm: a peer whose process vanished is seen through its socket" {
    var pair: Pair = undefined;
    try connect_pair(&pair, .{});
    defer pair.deinit();
    // What the kernel does when the client process dies: its fds close, its live byte stays 1.
    _ = std.os.linux.close(pair.client.connection);
    pair.client.connection = -1;
    try testing.expectEqual(constants.State.disconnected, pair.server.state());
    try testing.expect(
        std.mem.indexOf(u8, pair.server.reason(), "closed its vchan socket") != null,
    );
}

test "shm: loopback and over-long paths are refused" {
    var client: Vchan = undefined;
    try testing.expectError(
        error.Fail,
        client.client_init(.{ .dir = "/tmp", .local_domain = 4, .remote_domain = 4, .port = 1 }),
    );
    try testing.expectEqual(@as(i32, @intFromEnum(std.os.linux.E.INVAL)), diag.errno());
    const long = "/tmp/" ++ "d" ** 120;
    try testing.expectError(
        error.Fail,
        client.client_init(.{ .dir = long, .local_domain = 4, .remote_domain = 5, .port = 1 }),
    );
}

test "shm: bytes_read and bytes_written count every path through the rings" {
    var pair: Pair = undefined;
    try connect_pair(&pair, .{});
    defer pair.deinit();
    const server = &pair.server;
    const client = &pair.client;
    try testing.expectEqual(@as(u64, 0), client.stats.bytes_written);
    // write and send; then a zero-copy write: a 3-byte header in front of 5 placed bytes.
    try testing.expectEqual(@as(u32, 10), try client.write("0123456789"));
    try testing.expectEqual(@as(u32, 4), try client.send("abcd"));
    var pieces: [2]std.posix.iovec = undefined;
    for (client.write_window(3, 5, &pieces)) |piece| @memset(piece.base[0..piece.len], 'z');
    try client.commit_write("hdr", 5);
    try testing.expectEqual(@as(u64, 22), client.stats.bytes_written);
    // read, recv, then the rest through a read window.
    var buffer: [16]u8 = undefined;
    try testing.expectEqual(@as(u32, 6), try server.read(buffer[0..6]));
    try testing.expectEqual(@as(u32, 4), try server.recv(buffer[0..4]));
    try testing.expectEqual(@as(u64, 10), server.stats.bytes_read);
    const rest = server.data_ready();
    try testing.expectEqual(@as(u32, 12), rest);
    _ = server.read_window(rest, &pieces);
    server.commit_read(rest);
    try testing.expectEqual(@as(u64, 22), server.stats.bytes_read);
    // Nothing went the other way.
    try testing.expectEqual(@as(u64, 0), server.stats.bytes_written);
    try testing.expectEqual(@as(u64, 0), client.stats.bytes_read);
}

test "shm: a peer that never drains its wake-ups does not slow the kicker" {
    var pair: Pair = undefined;
    try connect_pair(&pair, .{});
    defer pair.deinit();
    // Far more kicks than a socket buffer holds, none drained by the client: every one is sent
    // or dropped without blocking, and the client still has a wake-up pending at the end.
    var buffer: [1]u8 = undefined;
    var round: u32 = 0;
    while (round < 20_000) : (round += 1) {
        _ = pair.client.data_ready();
        try testing.expectEqual(@as(u32, 1), try pair.server.write("x"));
        try testing.expectEqual(@as(u32, 1), try pair.client.read(&buffer));
    }
    try testing.expect(pair.server.stats.kicks >= 20_000);
    try pair.client.wait_event(0);
    try testing.expect(pair.client.stats.wakeups >= 1);
}

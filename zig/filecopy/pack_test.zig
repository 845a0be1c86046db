//! Tests of zig/filecopy/pack.zig: the worked example packed from a real directory byte for
//! byte, result handling (CRC mismatch, remote codes, EOF, sanitized names), and round trips
//! through pipes with the receiver on another thread.
const std = @import("std");
const testing = std.testing;
const linux = std.os.linux;

const diag = @import("../diag.zig");
const wire = @import("wire.zig");
const pack = @import("pack.zig");
const unpack = @import("unpack.zig");
const wire_test = @import("wire_test.zig");
const unpack_test = @import("unpack_test.zig");
const ok = unpack_test.ok;
const memfd = unpack_test.memfd;

fn ignore_sigpipe() void {
    const action = linux.Sigaction{
        .handler = .{ .handler = linux.SIG.IGN },
        .mask = linux.empty_sigset,
        .flags = 0,
    };
    _ = linux.sigaction(linux.SIG.PIPE, &action, null);
}

fn set_times(dir: std.fs.Dir, name: [*:0]const u8, atime_nsec: isize, mtime_nsec: isize) !void {
    const times = [2]linux.timespec{
        .{ .sec = 1700000000, .nsec = atime_nsec },
        .{ .sec = 1700000000, .nsec = mtime_nsec },
    };
    _ = try ok(linux.utimensat(dir.fd, name, &times, linux.AT.SYMLINK_NOFOLLOW));
}

fn chmod(dir: std.fs.Dir, name: [*:0]const u8, mode: u32) !void {
    _ = try ok(linux.fchmodat(dir.fd, name, mode, 0));
}

/// "<tmp>/<name>" with a NUL after it, as qf_pack takes paths.
fn path_list(buffer: []u8, tmp: *testing.TmpDir, names: []const []const u8) ![]const u8 {
    var real: [std.fs.max_path_bytes]u8 = undefined;
    const base = try tmp.dir.realpath(".", &real);
    var stream = std.io.fixedBufferStream(buffer);
    for (names) |name| try stream.writer().print("{s}/{s}\x00", .{ base, name });
    return stream.getWritten();
}

fn make_worked_example(tmp: *testing.TmpDir) !void {
    try tmp.dir.makeDir("d");
    try tmp.dir.writeFile(.{ .sub_path = "d/a.txt", .data = "hi\n" });
    try chmod(tmp.dir, "d", 0o755);
    try chmod(tmp.dir, "d/a.txt", 0o644);
    try set_times(tmp.dir, "d/a.txt", 5, 7);
    try set_times(tmp.dir, "d", 0, 0);
}

fn read_all(fd: i32, buffer: []u8) !usize {
    _ = try ok(linux.lseek(fd, 0, linux.SEEK.SET));
    return try ok(linux.read(fd, buffer.ptr, buffer.len));
}

/// A receiver that reads `expect_len` bytes (or to EOF), then answers with `reply` and closes.
const FakeReceiver = struct {
    stream_fd: i32,
    reply_fd: i32,
    expect_len: usize,
    reply: []const u8,
    sent: [1024]u8 = undefined,
    sent_len: usize = 0,

    fn run(self: *FakeReceiver) void {
        while (self.sent_len < self.expect_len) {
            const rc = linux.read(
                self.stream_fd,
                self.sent[self.sent_len..].ptr,
                self.sent.len - self.sent_len,
            );
            if (linux.E.init(rc) != .SUCCESS or rc == 0) break;
            self.sent_len += rc;
        }
        _ = linux.write(self.reply_fd, self.reply.ptr, self.reply.len);
        _ = linux.close(self.reply_fd);
        _ = linux.close(self.stream_fd);
    }
};

const Faked = struct { rc: i32, result: pack.Result, sent: [1024]u8, sent_len: usize };

fn pack_against(paths: []const u8, reply: []const u8, expect_len: usize) !Faked {
    ignore_sigpipe();
    var stream: [2]i32 = undefined;
    var back: [2]i32 = undefined;
    _ = try ok(linux.pipe2(&stream, .{ .CLOEXEC = true }));
    _ = try ok(linux.pipe2(&back, .{ .CLOEXEC = true }));
    var fake: FakeReceiver = .{
        .stream_fd = stream[0],
        .reply_fd = back[1],
        .expect_len = expect_len,
        .reply = reply,
    };
    const thread = try std.Thread.spawn(.{}, FakeReceiver.run, .{&fake});
    var outcome: Faked = undefined;
    outcome.rc = pack.pack(stream[1], back[0], paths, .{}, null, &outcome.result);
    _ = linux.close(stream[1]);
    thread.join();
    _ = linux.close(back[0]);
    outcome.sent = fake.sent;
    outcome.sent_len = fake.sent_len;
    return outcome;
}

test "pack: spec §2.9 worked example from a real directory, byte for byte" {
    var tmp = testing.tmpDir(.{});
    defer tmp.cleanup();
    try make_worked_example(&tmp);
    var paths_buffer: [4096]u8 = undefined;
    const paths = try path_list(&paths_buffer, &tmp, &.{"d/"}); // one trailing '/' is stripped

    const reply = [_]u8{
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0x02,
        0x8f,
        0x08,
        0x6c,
        0,
        0,
        0,
        0,
        1,
        0,
        0,
        0,
        'd',
    };
    const outcome = try pack_against(paths, &reply, 143);
    try testing.expectEqual(@as(i32, 0), outcome.rc);
    var expected: [143]u8 = undefined;
    wire_test.worked_example(&expected);
    try testing.expectEqualSlices(u8, &expected, outcome.sent[0..outcome.sent_len]);
    const result = &outcome.result;
    try testing.expectEqual(@as(u32, 0x6c088f02), result.local_crc);
    try testing.expectEqual(@as(u32, 0x6c088f02), result.remote_crc);
    try testing.expectEqual(@as(u32, 1), result.has_last_name);
    try testing.expectEqualStrings("d", result.last_name[0..result.last_name_len]);
    try testing.expectEqual(@as(u64, 3), result.bytes);
    try testing.expectEqual(@as(u64, 2), result.entries);
}

fn pack_with_reply(reply: []const u8, result: *pack.Result) !i32 {
    var tmp = testing.tmpDir(.{});
    defer tmp.cleanup();
    try make_worked_example(&tmp);
    var paths_buffer: [4096]u8 = undefined;
    const paths = try path_list(&paths_buffer, &tmp, &.{"d"});
    const outcome = try pack_against(paths, reply, 143);
    result.* = outcome.result;
    return outcome.rc;
}

test "pack: a result that is already there is read after the first entry" {
    // A regular file as in_fd is always readable: the sender takes its content as an early
    // result after the first entry (here an error code, so it stops).
    var tmp = testing.tmpDir(.{});
    defer tmp.cleanup();
    try make_worked_example(&tmp);
    var paths_buffer: [4096]u8 = undefined;
    const paths = try path_list(&paths_buffer, &tmp, &.{"d"});
    const in_fd = try memfd(&[_]u8{ 28, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 });
    defer _ = linux.close(in_fd);
    const out_fd = try memfd("");
    defer _ = linux.close(out_fd);
    var result: pack.Result = undefined;
    try testing.expectEqual(@as(i32, 28), pack.pack(out_fd, in_fd, paths, .{}, null, &result));
    try testing.expectEqual(@as(u64, 1), result.entries); // the directory's first header
    try testing.expectEqual(@as(u32, 0), result.has_last_name);
}

test "pack: a wrong CRC, a remote code, EOF instead of a result, an old receiver without ext" {
    var result: pack.Result = undefined;
    const wrong_crc = [_]u8{ 0, 0, 0, 0, 0, 0, 0, 0, 0x03, 0x8f, 0x08, 0x6c, 0, 0, 0, 0 };
    try testing.expectEqual(
        -@as(i32, @intFromEnum(linux.E.BADMSG)),
        try pack_with_reply(&wrong_crc, &result),
    );
    try testing.expectEqualStrings("File transfer failed: checksum mismatch", diag.message());
    try testing.expectEqual(@as(u32, 0), result.has_last_name);

    const eexist = [_]u8{
        17,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        9,
        0,
        0,
        0,
        'd',
        '/',
        '"',
        0x1b,
        '[',
        0xc3,
        0xa9,
        '~',
        0x7f,
    };
    try testing.expectEqual(@as(i32, 17), try pack_with_reply(&eexist, &result));
    try testing.expectEqual(@as(u32, 17), result.remote_code);
    try testing.expectEqualStrings("d/__[__~_", result.last_name[0..result.last_name_len]);

    // The directory quirk of upstream: (uint32)-84 still reads as a remote error.
    const quirk = [_]u8{ 0xac, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
    try testing.expectEqual(@as(i32, std.math.maxInt(i32)), try pack_with_reply(&quirk, &result));
    try testing.expectEqual(@as(u32, 0xffffffac), result.remote_code);

    try testing.expectEqual(
        -@as(i32, @intFromEnum(linux.E.PIPE)),
        try pack_with_reply("", &result),
    );
    try testing.expectEqual(
        -@as(i32, @intFromEnum(linux.E.PIPE)),
        try pack_with_reply("\x00\x00\x00", &result),
    );

    const old = [_]u8{ 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x8f, 0x08, 0x6c, 0, 0, 0, 0 };
    try testing.expectEqual(@as(i32, 0), try pack_with_reply(&old, &result));
    try testing.expectEqual(@as(u32, 0), result.has_last_name);
}

test "pack: the whole 64-bit CRC field is compared (bit 32 set is a mismatch, as upstream)" {
    var result: pack.Result = undefined;
    const mismatch = -@as(i32, @intFromEnum(linux.E.BADMSG));
    const high = [_]u8{ 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x8f, 0x08, 0x6c, 1, 0, 0, 0 };
    try testing.expectEqual(mismatch, try pack_with_reply(&high, &result));
    try testing.expectEqualStrings("File transfer failed: checksum mismatch", diag.message());
    const top = [_]u8{ 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x8f, 0x08, 0x6c, 0, 0, 0, 0x80 };
    try testing.expectEqual(mismatch, try pack_with_reply(&top, &result));
}

test "pack: local errors use upstream's words" {
    var tmp = testing.tmpDir(.{});
    defer tmp.cleanup();
    var paths_buffer: [4096]u8 = undefined;
    const out_fd = try memfd("");
    defer _ = linux.close(out_fd);
    const in_fd = try memfd("");
    defer _ = linux.close(in_fd);
    var result: pack.Result = undefined;

    const missing = try path_list(&paths_buffer, &tmp, &.{"missing"});
    try testing.expectEqual(
        -@as(i32, @intFromEnum(linux.E.NOENT)),
        pack.pack(out_fd, in_fd, missing, .{}, null, &result),
    );
    try testing.expectEqualStrings("stat missing", diag.message());

    try testing.expectEqual(
        -@as(i32, @intFromEnum(linux.E.INVAL)),
        pack.pack(out_fd, in_fd, "\x00", .{}, null, &result),
    );
    try testing.expectEqualStrings("Invalid empty argument", diag.message());

    try tmp.dir.makeDir("locked");
    try tmp.dir.writeFile(.{ .sub_path = "locked/f", .data = "" });
    try chmod(tmp.dir, "locked", 0);
    defer chmod(tmp.dir, "locked", 0o755) catch {}; // else tmp's cleanup cannot enter it
    // Root reads through mode 0, so only check the message shape when it fails.
    const locked = try path_list(&paths_buffer, &tmp, &.{"locked"});
    const rc = pack.pack(out_fd, in_fd, locked, .{}, null, &result);
    if (rc == -@as(
        i32,
        @intFromEnum(linux.E.ACCES),
    )) try testing.expectEqualStrings("opendir locked", diag.message());
}

test "pack: a file shorter than its size is 'Unexpected end of data while reading'" {
    const out_fd = try memfd("");
    defer _ = linux.close(out_fd);
    const in_fd = try memfd("");
    defer _ = linux.close(in_fd);
    var result: pack.Result = undefined;
    const packer = try pack.Packer.init(testing.allocator, out_fd, in_fd, .{}, null, &result);
    defer packer.deinit();
    @memcpy(packer.path[0..6], "shrunk");
    packer.path_len = 6;
    const file = try memfd("12345");
    defer _ = linux.close(file);
    try testing.expectError(error.Fail, packer.send_content_for_test(file, 10));
    try testing.expectEqualStrings(
        "Copying file shrunk: Unexpected end of data while reading",
        diag.message(),
    );
}

// ------------------------------------------------------------------------------ round trips

const Receiver = struct {
    in_fd: i32,
    out_fd: i32,
    dir_fd: i32,
    flags: unpack.Flags = .{},
    code: i32 = 0,
    stats: unpack.Stats = undefined,

    fn run(self: *Receiver) void {
        self.code = unpack.unpack(self.in_fd, self.out_fd, self.dir_fd, self.flags, &self.stats);
        // As the receiving process would by exiting: the sender now gets EPIPE / EOF.
        _ = linux.close(self.in_fd);
        _ = linux.close(self.out_fd);
    }
};

const Transfer = struct { rc: i32, result: pack.Result, receiver: Receiver };

fn transfer(
    paths: []const u8,
    flags: pack.Flags,
    dir_fd: i32,
    unpack_flags: unpack.Flags,
) !Transfer {
    return transfer_over(.pipes, paths, flags, dir_fd, unpack_flags);
}

/// Pipes (the sender splices files straight into the stream), or socketpairs as qrexec gives
/// them (the sender splices through a pipe of its own).
const Channel = enum { pipes, sockets };

fn channel(kind: Channel, fds: *[2]i32) !void {
    switch (kind) {
        .pipes => _ = try ok(linux.pipe2(fds, .{ .CLOEXEC = true })),
        .sockets => _ = try ok(
            linux.socketpair(linux.AF.UNIX, linux.SOCK.STREAM | linux.SOCK.CLOEXEC, 0, fds),
        ),
    }
}

fn transfer_over(
    kind: Channel,
    paths: []const u8,
    flags: pack.Flags,
    dir_fd: i32,
    unpack_flags: unpack.Flags,
) !Transfer {
    ignore_sigpipe();
    var stream: [2]i32 = undefined;
    var back: [2]i32 = undefined;
    try channel(kind, &stream);
    try channel(kind, &back);
    var outcome: Transfer = undefined;
    outcome.receiver = .{
        .in_fd = stream[0],
        .out_fd = back[1],
        .dir_fd = dir_fd,
        .flags = unpack_flags,
    };
    const thread = try std.Thread.spawn(.{}, Receiver.run, .{&outcome.receiver});
    outcome.rc = pack.pack(stream[1], back[0], paths, flags, null, &outcome.result);
    _ = linux.close(stream[1]);
    thread.join();
    _ = linux.close(back[0]);
    return outcome;
}

/// Kinds, modes, sizes, contents, symlink targets and mtimes of two trees must agree.
fn expect_same_tree(a: std.fs.Dir, b: std.fs.Dir, path: []const u8) !void {
    var path_a: [4096]u8 = undefined;
    var path_z = try std.fmt.bufPrintZ(&path_a, "{s}", .{path});
    var sa: linux.Stat = undefined;
    var sb: linux.Stat = undefined;
    _ = try ok(linux.fstatat(a.fd, path_z, &sa, linux.AT.SYMLINK_NOFOLLOW));
    _ = try ok(linux.fstatat(b.fd, path_z, &sb, linux.AT.SYMLINK_NOFOLLOW));
    testing.expectEqual(sa.mode, sb.mode) catch |err| {
        std.debug.print("mode of {s}\n", .{path});
        return err;
    };
    switch (wire.kind_of(sa.mode)) {
        .symlink => {
            var ta: [256]u8 = undefined;
            var tb: [256]u8 = undefined;
            try testing.expectEqualStrings(try a.readLink(path, &ta), try b.readLink(path, &tb));
            return;
        },
        .regular => {
            try testing.expectEqual(sa.size, sb.size);
            const ca = try a.readFileAlloc(testing.allocator, path, 1 << 24);
            defer testing.allocator.free(ca);
            const cb = try b.readFileAlloc(testing.allocator, path, 1 << 24);
            defer testing.allocator.free(cb);
            try testing.expect(std.mem.eql(u8, ca, cb));
        },
        .directory => {
            var dir = try a.openDir(path, .{ .iterate = true });
            defer dir.close();
            var iterator = dir.iterate();
            var count: usize = 0;
            while (try iterator.next()) |entry| {
                if (entry.kind == .named_pipe) continue;
                count += 1;
                var child: [4096]u8 = undefined;
                try expect_same_tree(
                    a,
                    b,
                    try std.fmt.bufPrint(&child, "{s}/{s}", .{ path, entry.name }),
                );
            }
            var other = try b.openDir(path, .{ .iterate = true });
            defer other.close();
            var other_iterator = other.iterate();
            var other_count: usize = 0;
            while (try other_iterator.next()) |_| other_count += 1;
            try testing.expectEqual(count, other_count);
        },
        .other => return,
    }
    path_z = path_z; // keep the name alive for the message above
    try testing.expectEqual(sa.mtim.sec, sb.mtim.sec);
    try testing.expectEqual(sa.mtim.nsec, sb.mtim.nsec);
}

test "pack + unpack: a tree round-trips (nesting, empties, links, unicode, modes, ns times)" {
    var source = testing.tmpDir(.{ .iterate = true });
    defer source.cleanup();
    var target = testing.tmpDir(.{ .iterate = true });
    defer target.cleanup();
    const s = source.dir;
    try s.makePath("top/sub/deeper/deepest");
    try s.makePath("top/empty-dir");
    try s.makePath("top/setgid");
    try s.writeFile(.{ .sub_path = "top/empty", .data = "" });
    try s.writeFile(.{ .sub_path = "top/sub/private", .data = "secret" });
    try s.writeFile(.{ .sub_path = "top/sub/deeper/deepest/leaf", .data = "leaf" });
    try s.writeFile(.{ .sub_path = "top/Grüße-καλημέρα-привет-漢字", .data = "unicode" });
    try s.writeFile(.{ .sub_path = "top/setgid/run", .data = "#!/bin/sh\n" });
    var big: [300_000]u8 = undefined;
    for (&big, 0..) |*byte, i| byte.* = @truncate(i *% 31);
    try s.writeFile(.{ .sub_path = "top/sub/big", .data = &big });
    try s.symLink("../empty", "top/sub/up", .{});
    try s.symLink("deeper/deepest/leaf", "top/sub/down", .{});
    try s.symLink("./busybox", "top/sub/dot", .{});
    _ = try ok(linux.mknodat(s.fd, "top/fifo", linux.S.IFIFO | 0o644, 0)); // skipped
    try chmod(s, "top/sub/private", 0o600);
    try chmod(s, "top/setgid/run", 0o755);
    try chmod(s, "top/setgid", 0o2755);
    try chmod(s, "top/sub", 0o750);
    const ns = [_][:0]const u8{
        "top/empty",
        "top/sub/private",
        "top/sub/big",
        "top/sub/deeper/deepest/leaf",
        "top/setgid/run",
        "top/sub/deeper/deepest",
        "top/sub/deeper",
        "top/sub",
        "top/setgid",
        "top/empty-dir",
        "top",
    };
    for (ns, 0..) |name, i| {
        const times = [2]linux.timespec{
            .{ .sec = 1600000000, .nsec = 1 },
            .{
                .sec = 1650000000 + @as(isize, @intCast(i)),
                .nsec = 999_999_999 - @as(isize, @intCast(i)),
            },
        };
        _ = try ok(linux.utimensat(s.fd, name, &times, 0));
    }
    var paths_buffer: [4096]u8 = undefined;
    const paths = try path_list(&paths_buffer, &source, &.{"top"});
    const outcome = try transfer(paths, .{}, target.dir.fd, .{});
    try testing.expectEqual(@as(i32, 0), outcome.rc);
    try testing.expectEqual(@as(i32, 0), outcome.receiver.code);
    try testing.expectEqual(outcome.result.local_crc, outcome.receiver.stats.crc);
    try testing.expectEqualStrings(
        "top",
        outcome.result.last_name[0..outcome.result.last_name_len],
    );
    try testing.expectEqual(@as(u64, 6), outcome.receiver.stats.files);
    try testing.expectEqual(@as(u64, 3), outcome.receiver.stats.symlinks);
    try testing.expectEqual(@as(u64, 300_000 + 6 + 4 + 7 + 10), outcome.result.bytes);
    try expect_same_tree(s, target.dir, "top");
    try testing.expect(!(target.dir.access("top/fifo", .{}) != error.FileNotFound));

    // Again, without symlinks, into a fresh place: they are neither sent nor followed.
    var again = testing.tmpDir(.{ .iterate = true });
    defer again.cleanup();
    const without = try transfer(paths, .{ .ignore_symlinks = true }, again.dir.fd, .{});
    try testing.expectEqual(@as(i32, 0), without.rc);
    try testing.expectEqual(@as(u64, 0), without.receiver.stats.symlinks);
}

test "pack + unpack: an early error reaches the sender mid-stream (EEXIST before a large file)" {
    var source = testing.tmpDir(.{ .iterate = true });
    defer source.cleanup();
    var target = testing.tmpDir(.{ .iterate = true });
    defer target.cleanup();
    try source.dir.makeDir("d");
    try source.dir.writeFile(.{ .sub_path = "d/a", .data = "new" });
    try target.dir.makeDir("d");
    try target.dir.writeFile(.{ .sub_path = "d/a", .data = "old" });
    // Several files of 8 MiB so that the sender is still writing when the result comes.
    const big = try testing.allocator.alloc(u8, 8 * 1024 * 1024);
    defer testing.allocator.free(big);
    @memset(big, 'b');
    for (0..4) |i| {
        var name: [16]u8 = undefined;
        try source.dir.writeFile(
            .{ .sub_path = try std.fmt.bufPrint(&name, "d/z{d}", .{i}), .data = big },
        );
    }
    var paths_buffer: [4096]u8 = undefined;
    const paths = try path_list(&paths_buffer, &source, &.{"d"});
    const outcome = try transfer(paths, .{}, target.dir.fd, .{});
    try testing.expectEqual(@as(i32, 17), outcome.receiver.code);
    // readdir order decides whether d/a comes first; either way the error is EEXIST.
    try testing.expectEqual(@as(i32, 17), outcome.rc);
    try testing.expectEqualStrings(
        "d/a",
        outcome.result.last_name[0..outcome.result.last_name_len],
    );
    var content: [8]u8 = undefined;
    try testing.expectEqualStrings("old", try target.dir.readFile("d/a", &content));
}

// ------------------------------------------------------------------------------ splice

fn pattern(buffer: []u8, seed: u8) void {
    var x: u32 = 0x9e3779b9 +% @as(u32, seed);
    for (buffer) |*byte| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        byte.* = @truncate(x);
    }
}

test "pack + unpack: large files are spliced, over pipes and over socketpairs, byte for byte" {
    const sizes = [_]usize{
        pack.splice_min_bytes - 1,
        pack.splice_min_bytes,
        3 * pack.splice_chunk_bytes + 12345,
    };
    var source = testing.tmpDir(.{ .iterate = true });
    defer source.cleanup();
    try source.dir.makeDir("big");
    const data = try testing.allocator.alloc(u8, sizes[2]);
    defer testing.allocator.free(data);
    for (sizes, 0..) |size, i| {
        pattern(data[0..size], @intCast(i));
        var name: [16]u8 = undefined;
        try source.dir.writeFile(
            .{ .sub_path = try std.fmt.bufPrint(&name, "big/f{d}", .{i}), .data = data[0..size] },
        );
        try source.dir.writeFile(
            .{ .sub_path = try std.fmt.bufPrint(&name, "big/s{d}", .{i}), .data = "small" },
        );
    }
    var paths_buffer: [4096]u8 = undefined;
    const paths = try path_list(&paths_buffer, &source, &.{"big"});
    for ([_]Channel{ .pipes, .sockets }) |kind| {
        var target = testing.tmpDir(.{ .iterate = true });
        defer target.cleanup();
        const outcome = try transfer_over(kind, paths, .{}, target.dir.fd, .{});
        try testing.expectEqual(@as(i32, 0), outcome.rc);
        try testing.expectEqual(@as(i32, 0), outcome.receiver.code);
        try testing.expectEqual(outcome.result.local_crc, outcome.receiver.stats.crc);
        try testing.expectEqual(
            @as(u64, sizes[0] + sizes[1] + sizes[2] + 15),
            outcome.result.bytes,
        );
        try expect_same_tree(source.dir, target.dir, "big");
    }
}

test "pack: an output that refuses splice (O_APPEND) gets the same bytes and CRC by copying" {
    var tmp = testing.tmpDir(.{ .iterate = true });
    defer tmp.cleanup();
    const size = 2 * pack.splice_chunk_bytes + 777;
    const data = try testing.allocator.alloc(u8, size);
    defer testing.allocator.free(data);
    pattern(data, 7);
    const file = try memfd(data);
    defer _ = linux.close(file);
    const out_fd: i32 = @intCast(
        try ok(
            linux.openat(
                tmp.dir.fd,
                "stream",
                .{ .ACCMODE = .RDWR, .CREAT = true, .APPEND = true, .CLOEXEC = true },
                0o600,
            ),
        ),
    );
    defer _ = linux.close(out_fd);
    const in_fd = try memfd("");
    defer _ = linux.close(in_fd);
    var result: pack.Result = undefined;
    const packer = try pack.Packer.init(testing.allocator, out_fd, in_fd, .{}, null, &result);
    defer packer.deinit();
    try packer.send_content_for_test(file, size);
    try testing.expectEqual(.off, packer.splice);
    try testing.expectEqual(@as(u64, size), packer.bytes);
    try testing.expectEqual(wire.crc32(0, data), packer.crc);
    const sent = try tmp.dir.readFileAlloc(testing.allocator, "stream", size + 1);
    defer testing.allocator.free(sent);
    try testing.expect(std.mem.eql(u8, data, sent));
}

test "pack: a spliced file shorter than its size is 'Unexpected end of data while reading'" {
    const out_fd = try memfd("");
    defer _ = linux.close(out_fd);
    const in_fd = try memfd("");
    defer _ = linux.close(in_fd);
    var result: pack.Result = undefined;
    const packer = try pack.Packer.init(testing.allocator, out_fd, in_fd, .{}, null, &result);
    defer packer.deinit();
    @memcpy(packer.path[0..6], "shrunk");
    packer.path_len = 6;
    const data = try testing.allocator.alloc(u8, pack.splice_chunk_bytes + 5);
    defer testing.allocator.free(data);
    pattern(data, 3);
    const file = try memfd(data);
    defer _ = linux.close(file);
    try testing.expectError(
        error.Fail,
        packer.send_content_for_test(file, 3 * pack.splice_chunk_bytes),
    );
    try testing.expectEqualStrings(
        "Copying file shrunk: Unexpected end of data while reading",
        diag.message(),
    );
    try testing.expectEqual(.pipe, packer.splice);
    try testing.expectEqual(@as(u64, data.len), packer.bytes);
}

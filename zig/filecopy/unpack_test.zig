//! Tests of zig/filecopy/unpack.zig: the receiver against hand-built streams (memfds in and
//! out, a temp dir as the target): the worked example, every truncation point, rejected names,
//! symlink escapes, collisions, limits, bad nanoseconds, the O_EXCL fallback and a full disk.
const std = @import("std");
const testing = std.testing;
const linux = std.os.linux;

const diag = @import("../diag.zig");
const wire = @import("wire.zig");
const unpack = @import("unpack.zig");
const wire_test = @import("wire_test.zig");

pub const Times = struct {
    atime: u32 = 1700000000,
    atime_nsec: u32 = 0,
    mtime: u32 = 1700000000,
    mtime_nsec: u32 = 0,
};

/// Builds a stream the way a (possibly hostile) sender would.
pub const Stream = struct {
    bytes: std.ArrayList(u8),

    pub fn init() Stream {
        return .{ .bytes = std.ArrayList(u8).init(testing.allocator) };
    }

    pub fn deinit(self: *Stream) void {
        self.bytes.deinit();
    }

    pub fn raw_header(self: *Stream, header: wire.FileHeader) !void {
        var out: [32]u8 = undefined;
        header.encode(&out);
        try self.bytes.appendSlice(&out);
    }

    /// An entry with `name` + NUL and `payload` (content or target); filelen = payload length
    /// unless `filelen` is given.
    pub fn entry(
        self: *Stream,
        name: []const u8,
        mode: u32,
        payload: []const u8,
        times: Times,
    ) !void {
        try self.raw_header(.{
            .namelen = @intCast(name.len + 1),
            .mode = mode,
            .filelen = payload.len,
            .atime = times.atime,
            .atime_nsec = times.atime_nsec,
            .mtime = times.mtime,
            .mtime_nsec = times.mtime_nsec,
        });
        try self.bytes.appendSlice(name);
        try self.bytes.append(0);
        try self.bytes.appendSlice(payload);
    }

    pub fn dir(self: *Stream, name: []const u8) !void {
        try self.entry(name, 0o40755, "", .{});
    }

    pub fn file(self: *Stream, name: []const u8, content: []const u8) !void {
        try self.entry(name, 0o100644, content, .{});
    }

    pub fn link(self: *Stream, name: []const u8, target: []const u8) !void {
        try self.entry(name, 0o120777, target, .{});
    }

    pub fn end(self: *Stream) !void {
        try self.raw_header(wire.FileHeader.end_marker);
    }
};

pub fn memfd(contents: []const u8) !i32 {
    const fd: i32 = @intCast(try ok(linux.memfd_create("filecopy-test", linux.MFD.CLOEXEC)));
    var written: usize = 0;
    while (written < contents.len) written += try ok(
        linux.write(fd, contents[written..].ptr, contents.len - written),
    );
    _ = try ok(linux.lseek(fd, 0, linux.SEEK.SET));
    return fd;
}

pub fn ok(rc: usize) !usize {
    const errno = linux.E.init(rc);
    if (errno != .SUCCESS) {
        std.debug.print("syscall failed: {s}\n", .{@tagName(errno)});
        return error.Syscall;
    }
    return rc;
}

pub const Outcome = struct {
    code: i32,
    stats: unpack.Stats,
    reply: [wire.result_message_bytes_max]u8,
    reply_len: usize,

    pub fn reply_bytes(self: *const Outcome) []const u8 {
        return self.reply[0..self.reply_len];
    }

    /// The result's code field, and its extension's name (null without one).
    pub fn expect_reply(self: *const Outcome, code: u32, last_name: ?[]const u8) !void {
        const reply = self.reply_bytes();
        try testing.expect(reply.len >= 16);
        const header = wire.ResultHeader.decode(reply[0..16]);
        try testing.expectEqual(code, header.error_code);
        try testing.expectEqualSlices(u8, &[_]u8{ 0, 0, 0, 0 }, reply[4..8]);
        try testing.expectEqual(@as(u64, self.stats.crc), header.crc);
        if (last_name) |name| {
            try testing.expect(reply.len >= 20);
            try testing.expectEqual(
                @as(u32, @intCast(name.len)),
                std.mem.readInt(u32, reply[16..20], .little),
            );
            try testing.expectEqualSlices(u8, name, reply[20..]);
        } else {
            try testing.expectEqual(@as(usize, 16), reply.len);
        }
        try testing.expectEqual(@as(i32, @bitCast(code)), self.code);
    }
};

pub fn run_unpack(stream: []const u8, dir_fd: i32, flags: unpack.Flags) !Outcome {
    const in_fd = try memfd(stream);
    defer _ = linux.close(in_fd);
    const out_fd = try memfd("");
    defer _ = linux.close(out_fd);
    var outcome: Outcome = undefined;
    outcome.code = unpack.unpack(in_fd, out_fd, dir_fd, flags, &outcome.stats);
    _ = try ok(linux.lseek(out_fd, 0, linux.SEEK.SET));
    outcome.reply_len = try ok(linux.read(out_fd, &outcome.reply, outcome.reply.len));
    return outcome;
}

pub fn expect_empty(dir: std.fs.Dir) !void {
    var iterator = dir.iterate();
    if (try iterator.next()) |entry| {
        std.debug.print("unexpected entry {s}\n", .{entry.name});
        return error.TestUnexpectedResult;
    }
}

fn lstat(dir: std.fs.Dir, name: [*:0]const u8) !linux.Stat {
    var st: linux.Stat = undefined;
    _ = try ok(linux.fstatat(dir.fd, name, &st, linux.AT.SYMLINK_NOFOLLOW));
    return st;
}

fn exists(dir: std.fs.Dir, name: [*:0]const u8) bool {
    var st: linux.Stat = undefined;
    return linux.E.init(linux.fstatat(dir.fd, name, &st, linux.AT.SYMLINK_NOFOLLOW)) == .SUCCESS;
}

test "unpack: spec §2.9 worked example and its 21-byte reply" {
    var tmp = testing.tmpDir(.{ .iterate = true });
    defer tmp.cleanup();
    var stream: [143]u8 = undefined;
    wire_test.worked_example(&stream);
    const outcome = try run_unpack(&stream, tmp.dir.fd, .{});
    try testing.expectEqualSlices(
        u8,
        &[_]u8{ 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x8f, 0x08, 0x6c, 0, 0, 0, 0, 1, 0, 0, 0, 'd' },
        outcome.reply_bytes(),
    );
    try testing.expectEqual(@as(i32, 0), outcome.code);
    try testing.expectEqual(@as(u64, 1), outcome.stats.files);
    try testing.expectEqual(@as(u64, 1), outcome.stats.dirs);
    try testing.expectEqual(@as(u64, 3), outcome.stats.bytes);
    try testing.expectEqual(@as(u32, 0x6c088f02), outcome.stats.crc);

    const d = try lstat(tmp.dir, "d");
    try testing.expectEqual(@as(u32, 0o40755), d.mode);
    try testing.expectEqual(@as(isize, 1700000000), d.mtim.sec);
    const a = try lstat(tmp.dir, "d/a.txt");
    try testing.expectEqual(@as(u32, 0o100644), a.mode);
    try testing.expectEqual(@as(isize, 1700000000), a.mtim.sec);
    try testing.expectEqual(@as(isize, 7), a.mtim.nsec);
    try testing.expectEqual(@as(isize, 5), a.atim.nsec);
    var content: [8]u8 = undefined;
    try testing.expectEqualStrings("hi\n", try tmp.dir.readFile("d/a.txt", &content));
}

test "unpack: a cut in a header is EREMOTEIO, in a name or content LEGAL_EOF; no partial file" {
    var stream: [143]u8 = undefined;
    wire_test.worked_example(&stream);
    // Entry boundaries: before d, before d/a.txt, before the closing d, before the end marker.
    const boundaries = [_]usize{ 0, 34, 77, 111 };
    for (0..143) |cut| {
        var tmp = testing.tmpDir(.{ .iterate = true });
        defer tmp.cleanup();
        const outcome = try run_unpack(stream[0..cut], tmp.dir.fd, .{});
        const at_boundary = std.mem.indexOfScalar(usize, &boundaries, cut) != null;
        const in_name = (cut >= 32 and cut < 34) or (cut >= 66 and cut < 74) or
            (cut >= 109 and cut < 111);
        const in_header = (cut < 32) or (cut >= 34 and cut < 66) or (cut >= 77 and cut < 109) or
            cut >= 111;
        const in_body = !at_boundary and !in_header; // a name or the file's content
        const expected: u32 = if (in_body) wire.legal_eof else @intFromEnum(linux.E.REMOTEIO);
        // The last name: none when the cut is inside a name; else the last name read.
        const last: ?[]const u8 =
            if (in_name) null else if (cut < 34) "" else if (cut < 74) "d" else "d/a.txt";
        const last_fixed: ?[]const u8 = if (last != null and cut >= 111) "d" else last;
        outcome.expect_reply(expected, last_fixed) catch |err| {
            std.debug.print("cut at {d}\n", .{cut});
            return err;
        };
        // The file appears only once all of its content arrived.
        try testing.expectEqual(cut >= 77, exists(tmp.dir, "d/a.txt"));
        if (cut < 34) try expect_empty(tmp.dir);
    }
}

test "unpack: every rejected-name class is EILSEQ ((uint32)-84 for a directory), nothing made" {
    const rejected = [_][]const u8{
        "",             "/abs",                  "a//b",            "./a",
        "a/.",          ".",                     "..",              "a/../b",
        "a/",           "a/b/",                  "tab\there",       "esc\x1b",
        "bell\x07",     "del\x7f",               "\xff",            "\xc3",
        "\xed\xa0\x80", "nbsp\xc2\xa0",          "rtl\xe2\x80\xae", "zwj\xe2\x80\x8d",
        "\xd7\x90",     "emoji\xf0\x9f\x98\x80",
    };
    for (rejected) |name| {
        for ([_]u32{ 0o100644, 0o40755 }) |mode| {
            var tmp = testing.tmpDir(.{ .iterate = true });
            defer tmp.cleanup();
            var stream = Stream.init();
            defer stream.deinit();
            try stream.entry(name, mode, "", .{});
            try stream.end();
            const outcome = try run_unpack(stream.bytes.items, tmp.dir.fd, .{});
            // Upstream's directory quirk (§3.7): (uint32)-84 instead of EILSEQ.
            const ilseq: u32 = @intFromEnum(linux.E.ILSEQ);
            const code = if (mode == 0o40755) unpack.code_directory_name_invalid else ilseq;
            outcome.expect_reply(code, name) catch |err| {
                std.debug.print("name {any} mode {o}\n", .{ name, mode });
                return err;
            };
            try expect_empty(tmp.dir);
        }
    }
}

test "unpack: allow_all_names accepts odd characters but not odd structure" {
    var tmp = testing.tmpDir(.{ .iterate = true });
    defer tmp.cleanup();
    var stream = Stream.init();
    defer stream.deinit();
    try stream.file("esc\x1b[1m", "x");
    try stream.file("rtl\xd7\x90", "y");
    try stream.end();
    const outcome = try run_unpack(stream.bytes.items, tmp.dir.fd, .{ .allow_all_names = true });
    try outcome.expect_reply(0, "rtl\xd7\x90");
    try testing.expect(exists(tmp.dir, "esc\x1b[1m"));

    var tmp2 = testing.tmpDir(.{ .iterate = true });
    defer tmp2.cleanup();
    var bad = Stream.init();
    defer bad.deinit();
    try bad.file("../x", "y");
    const refused = try run_unpack(bad.bytes.items, tmp2.dir.fd, .{ .allow_all_names = true });
    try refused.expect_reply(@intFromEnum(linux.E.ILSEQ), "../x");
    try expect_empty(tmp2.dir);
}

test "unpack: symlinks that escape are ENOLINK with the target as last name; good ones are made" {
    const Case = struct { name: []const u8, target: []const u8, code: u32 };
    const cases = [_]Case{
        .{ .name = "top", .target = "x", .code = @intFromEnum(linux.E.NOLINK) },
        .{ .name = "d/l", .target = "../x", .code = @intFromEnum(linux.E.NOLINK) },
        .{ .name = "d/l", .target = "/etc/passwd", .code = @intFromEnum(linux.E.NOLINK) },
        .{ .name = "d/e/l", .target = "../../x", .code = @intFromEnum(linux.E.NOLINK) },
        .{ .name = "d/e/l", .target = "a/../../x", .code = @intFromEnum(linux.E.NOLINK) },
        .{ .name = "d/l", .target = "bad\x1b", .code = @intFromEnum(linux.E.ILSEQ) },
        .{ .name = "d/l\x1b", .target = "x", .code = @intFromEnum(linux.E.ILSEQ) },
        .{ .name = "d/l", .target = "x", .code = 0 },
        .{ .name = "d/e/l", .target = "../x", .code = 0 },
        .{ .name = "d/e/l", .target = "./busybox", .code = 0 },
    };
    for (cases) |case| {
        var tmp = testing.tmpDir(.{ .iterate = true });
        defer tmp.cleanup();
        var stream = Stream.init();
        defer stream.deinit();
        try stream.dir("d");
        try stream.dir("d/e");
        try stream.link(case.name, case.target);
        try stream.end();
        const outcome = try run_unpack(stream.bytes.items, tmp.dir.fd, .{});
        outcome.expect_reply(
            case.code,
            if (case.code == 0) case.name else case.target,
        ) catch |err| {
            std.debug.print("link {s} -> {s}\n", .{ case.name, case.target });
            return err;
        };
        if (case.code == 0) {
            var buffer: [64]u8 = undefined;
            const made = try tmp.dir.readLink(case.name, &buffer);
            try testing.expectEqualStrings(case.target, made);
            try testing.expectEqual(@as(u64, 1), outcome.stats.symlinks);
        } else {
            try testing.expect(
                !exists(tmp.dir, "d/l") and !exists(tmp.dir, "d/e/l") and !exists(tmp.dir, "top"),
            );
        }
    }
}

test "unpack: an existing name is EEXIST and keeps its content; existing directories are merged" {
    var tmp = testing.tmpDir(.{ .iterate = true });
    defer tmp.cleanup();
    try tmp.dir.makeDir("d");
    try tmp.dir.writeFile(.{ .sub_path = "d/a", .data = "old" });
    var stream = Stream.init();
    defer stream.deinit();
    try stream.dir("d");
    try stream.file("d/new", "fresh");
    try stream.file("d/a", "new content");
    try stream.end();
    const outcome = try run_unpack(stream.bytes.items, tmp.dir.fd, .{});
    try outcome.expect_reply(@intFromEnum(linux.E.EXIST), "d/a");
    var content: [16]u8 = undefined;
    try testing.expectEqualStrings("old", try tmp.dir.readFile("d/a", &content));
    try testing.expectEqualStrings("fresh", try tmp.dir.readFile("d/new", &content));

    // A symlink over an existing name, too.
    var link = Stream.init();
    defer link.deinit();
    try link.link("d/a", "new");
    const refused = try run_unpack(link.bytes.items, tmp.dir.fd, .{});
    try refused.expect_reply(@intFromEnum(linux.E.EXIST), "d/a");
}

test "unpack: parents are opened without following symlinks" {
    var tmp = testing.tmpDir(.{ .iterate = true });
    defer tmp.cleanup();
    try tmp.dir.makeDir("real");
    try tmp.dir.symLink("real", "d", .{});
    var stream = Stream.init();
    defer stream.deinit();
    try stream.file("d/a", "x");
    try stream.end();
    const outcome = try run_unpack(stream.bytes.items, tmp.dir.fd, .{});
    // O_NOFOLLOW|O_DIRECTORY on a symlink: ENOTDIR (ELOOP without O_DIRECTORY), reported with
    // the component that failed, as upstream's opendir_safe does.
    try outcome.expect_reply(@intFromEnum(linux.E.NOTDIR), "d");
    try testing.expect(!exists(tmp.dir, "real/a"));
}

test "unpack: a parent that cannot be opened is reported by its component (ENOTDIR, ENOENT)" {
    const Case = struct {
        setup: []const u8,
        name: []const u8,
        errno: linux.E,
        component: []const u8,
    };
    const cases = [_]Case{
        .{ .setup = "f", .name = "f/x", .errno = .NOTDIR, .component = "f" },
        .{ .setup = "", .name = "missing/x", .errno = .NOENT, .component = "missing" },
        .{ .setup = "d", .name = "d/f/deeper/x", .errno = .NOTDIR, .component = "f" },
        .{ .setup = "d", .name = "d/none/x", .errno = .NOENT, .component = "none" },
    };
    for (cases) |case| {
        var tmp = testing.tmpDir(.{ .iterate = true });
        defer tmp.cleanup();
        var stream = Stream.init();
        defer stream.deinit();
        if (std.mem.eql(u8, case.setup, "f")) try stream.file("f", "file");
        if (std.mem.eql(u8, case.setup, "d")) {
            try stream.dir("d");
            try stream.file("d/f", "file");
        }
        try stream.file(case.name, "x");
        try stream.end();
        const outcome = try run_unpack(stream.bytes.items, tmp.dir.fd, .{});
        try outcome.expect_reply(@intFromEnum(case.errno), case.component);
    }
}

test "unpack: a directory the stream made 0000 cannot be entered, even by root (EACCES)" {
    var tmp = testing.tmpDir(.{ .iterate = true });
    defer tmp.cleanup();
    var stream = Stream.init();
    defer stream.deinit();
    try stream.dir("a");
    try stream.dir("a/b");
    try stream.entry("a/b", 0o40000, "", .{}); // closing header: mode 0000
    try stream.file("a/b/y", "y");
    try stream.end();
    const outcome = try run_unpack(stream.bytes.items, tmp.dir.fd, .{});
    try outcome.expect_reply(@intFromEnum(linux.E.ACCES), "b");
    // The capabilities are back once the unpack is over: root sees that nothing was written.
    try testing.expect(!exists(tmp.dir, "a/b/y"));
    try testing.expectEqual(@as(u32, 0o40000), (try lstat(tmp.dir, "a/b")).mode);
}

test "unpack: limits: long name without ext, long symlink, huge file, unknown type" {
    var tmp = testing.tmpDir(.{ .iterate = true });
    defer tmp.cleanup();
    {
        var stream = Stream.init();
        defer stream.deinit();
        try stream.raw_header(
            .{
                .namelen = 16384,
                .mode = 0o100644,
                .filelen = 0,
                .atime = 0,
                .atime_nsec = 0,
                .mtime = 0,
                .mtime_nsec = 0,
            },
        );
        const outcome = try run_unpack(stream.bytes.items, tmp.dir.fd, .{});
        try outcome.expect_reply(@intFromEnum(linux.E.NAMETOOLONG), null);
    }
    {
        var stream = Stream.init();
        defer stream.deinit();
        try stream.dir("d");
        try stream.raw_header(
            .{
                .namelen = 4,
                .mode = 0o120777,
                .filelen = 16384,
                .atime = 0,
                .atime_nsec = 0,
                .mtime = 0,
                .mtime_nsec = 0,
            },
        );
        try stream.bytes.appendSlice("d/l\x00");
        const outcome = try run_unpack(stream.bytes.items, tmp.dir.fd, .{});
        try outcome.expect_reply(@intFromEnum(linux.E.NAMETOOLONG), "d/l");
    }
    {
        var stream = Stream.init();
        defer stream.deinit();
        try stream.raw_header(
            .{
                .namelen = 2,
                .mode = 0o100644,
                .filelen = 1 << 63,
                .atime = 0,
                .atime_nsec = 0,
                .mtime = 0,
                .mtime_nsec = 0,
            },
        );
        try stream.bytes.appendSlice("h\x00");
        const outcome = try run_unpack(stream.bytes.items, tmp.dir.fd, .{});
        try outcome.expect_reply(@intFromEnum(linux.E.DQUOT), "h");
        try testing.expect(!exists(tmp.dir, "h"));
    }
    {
        var stream = Stream.init();
        defer stream.deinit();
        try stream.entry("fifo", 0o10644, "", .{});
        const outcome = try run_unpack(stream.bytes.items, tmp.dir.fd, .{});
        try outcome.expect_reply(@intFromEnum(linux.E.INVAL), "fifo");
        try testing.expect(!exists(tmp.dir, "fifo"));
    }
    {
        // A name with an embedded NUL is cut there; the rest is ignored.
        var stream = Stream.init();
        defer stream.deinit();
        try stream.entry("cut\x00ignored", 0o100600, "z", .{});
        try stream.end();
        const outcome = try run_unpack(stream.bytes.items, tmp.dir.fd, .{});
        try outcome.expect_reply(0, "cut");
        try testing.expectEqual(@as(u32, 0o100600), (try lstat(tmp.dir, "cut")).mode);
    }
}

test "unpack: nanoseconds above 999999999 stop without a result, only where times are applied" {
    var tmp = testing.tmpDir(.{ .iterate = true });
    defer tmp.cleanup();
    {
        var stream = Stream.init();
        defer stream.deinit();
        try stream.entry("f", 0o100644, "x", .{ .mtime_nsec = 1_000_000_000 });
        try stream.end();
        const outcome = try run_unpack(stream.bytes.items, tmp.dir.fd, .{});
        try testing.expectEqual(@as(i32, -1), outcome.code);
        try testing.expectEqual(@as(usize, 0), outcome.reply_len);
        try testing.expect(std.mem.indexOf(u8, diag.message(), "nanoseconds") != null);
    }
    {
        // A directory's first header and a symlink are not checked; the closing header is.
        var stream = Stream.init();
        defer stream.deinit();
        try stream.entry("d", 0o40755, "", .{ .atime_nsec = 0xffffffff });
        try stream.entry("d/l", 0o120777, "x", .{ .atime_nsec = 0xffffffff });
        try stream.entry("d", 0o40755, "", .{ .atime_nsec = 0xffffffff });
        try stream.end();
        const outcome = try run_unpack(stream.bytes.items, tmp.dir.fd, .{});
        try testing.expectEqual(@as(i32, -1), outcome.code);
        try testing.expectEqual(@as(usize, 0), outcome.reply_len);
        try testing.expectEqual(@as(u64, 1), outcome.stats.dirs);
        try testing.expectEqual(@as(u64, 1), outcome.stats.symlinks);
    }
}

test "unpack: directories get their final mode and times from the closing header" {
    var tmp = testing.tmpDir(.{ .iterate = true });
    defer tmp.cleanup();
    var stream = Stream.init();
    defer stream.deinit();
    try stream.entry("ro", 0o40555, "", .{});
    try stream.entry("ro/f", 0o100400, "data", .{ .mtime = 1600000000, .mtime_nsec = 123456789 });
    try stream.entry("ro", 0o42555, "", .{ .mtime = 1500000000, .mtime_nsec = 42 });
    try stream.end();
    const outcome = try run_unpack(stream.bytes.items, tmp.dir.fd, .{});
    try outcome.expect_reply(0, "ro");
    const ro = try lstat(tmp.dir, "ro");
    try testing.expectEqual(@as(u32, 0o42555), ro.mode);
    try testing.expectEqual(@as(isize, 1500000000), ro.mtim.sec);
    try testing.expectEqual(@as(isize, 42), ro.mtim.nsec);
    const f = try lstat(tmp.dir, "ro/f");
    try testing.expectEqual(@as(u32, 0o100400), f.mode);
    try testing.expectEqual(@as(isize, 123456789), f.mtim.nsec);
}

test "unpack: many files in many directories (siblings, descent, return)" {
    var tmp = testing.tmpDir(.{ .iterate = true });
    defer tmp.cleanup();
    var stream = Stream.init();
    defer stream.deinit();
    try stream.dir("t");
    try stream.dir("t/a");
    try stream.file("t/a/1", "1");
    try stream.dir("t/a/b");
    try stream.file("t/a/b/2", "2");
    try stream.dir("t/a/b");
    try stream.file("t/a/3", "3");
    try stream.dir("t/a");
    try stream.dir("t/c");
    try stream.file("t/c/4", "4");
    try stream.dir("t/c");
    try stream.file("t/5", "5");
    try stream.dir("t");
    try stream.end();
    const outcome = try run_unpack(stream.bytes.items, tmp.dir.fd, .{});
    try outcome.expect_reply(0, "t");
    var content: [4]u8 = undefined;
    for ([_][]const u8{ "t/a/1", "t/a/b/2", "t/a/3", "t/c/4", "t/5" }) |path| {
        const data = try tmp.dir.readFile(path, &content);
        try testing.expectEqualStrings(path[path.len - 1 ..], data);
    }
    try testing.expectEqual(@as(u64, 5), outcome.stats.files);
    try testing.expectEqual(@as(u64, 4), outcome.stats.dirs);
}

fn open_fd_count() !usize {
    var fds = try std.fs.openDirAbsolute("/proc/self/fd", .{ .iterate = true });
    defer fds.close();
    var count: usize = 0;
    var entries = fds.iterate();
    while (try entries.next()) |_| count += 1;
    return count;
}

test "unpack: the /proc/self/fd it links files through is closed after the run" {
    var tmp = testing.tmpDir(.{ .iterate = true });
    defer tmp.cleanup();
    var stream = Stream.init();
    defer stream.deinit();
    try stream.dir("d");
    for ([_][]const u8{ "d/1", "d/2", "d/3" }) |name| try stream.file(name, name);
    try stream.dir("d");
    try stream.end();
    const before = try open_fd_count();
    const outcome = try run_unpack(stream.bytes.items, tmp.dir.fd, .{});
    try testing.expectEqual(before, try open_fd_count());
    try outcome.expect_reply(0, "d");
    var content: [4]u8 = undefined;
    for ([_][]const u8{ "d/1", "d/2", "d/3" }) |name| {
        try testing.expectEqualStrings(name, try tmp.dir.readFile(name, &content));
    }
}

/// Plays the sender on a pipe: `first`, then (once `a/f` exists in the target) moves `a` out of
/// it, optionally puts a new `a` in its place, and sends `rest`.
const Mover = struct {
    write_fd: i32,
    root: std.fs.Dir,
    first: []const u8,
    rest: []const u8,
    replace: bool,

    fn run(self: *const Mover) void {
        self.play() catch |err| std.debug.print("mover: {s}\n", .{@errorName(err)});
        _ = linux.close(self.write_fd);
    }

    fn play(self: *const Mover) !void {
        _ = try ok(linux.write(self.write_fd, self.first.ptr, self.first.len));
        var waited: u32 = 0;
        while (!exists(self.root, "target/a/f")) : (waited += 1) {
            if (waited > 10_000) return error.Timeout;
            std.time.sleep(std.time.ns_per_ms);
        }
        try self.root.rename("target/a", "outside/a");
        if (self.replace) try self.root.makeDir("target/a");
        _ = try ok(linux.write(self.write_fd, self.rest.ptr, self.rest.len));
    }
};

fn fallback_with_move(replace: bool) !Outcome {
    var tmp = testing.tmpDir(.{ .iterate = true });
    defer tmp.cleanup();
    try tmp.dir.makeDir("target");
    try tmp.dir.makeDir("outside");
    var target = try tmp.dir.openDir("target", .{});
    defer target.close();
    var stream = Stream.init();
    defer stream.deinit();
    try stream.dir("a");
    try stream.file("a/f", "0123456789");
    try stream.end();
    const cut = stream.bytes.items.len - 32 - 6; // inside a/f's content
    var fds: [2]i32 = undefined;
    _ = try ok(linux.pipe2(&fds, .{ .CLOEXEC = true }));
    defer _ = linux.close(fds[0]);
    const mover: Mover = .{
        .write_fd = fds[1],
        .root = tmp.dir,
        .first = stream.bytes.items[0..cut],
        .rest = stream.bytes.items[cut..],
        .replace = replace,
    };
    const thread = try std.Thread.spawn(.{}, Mover.run, .{&mover});
    const out_fd = try memfd("");
    defer _ = linux.close(out_fd);
    var outcome: Outcome = undefined;
    const stats = &outcome.stats;
    const allocator = testing.allocator;
    const unpacker = try unpack.Unpacker.init(allocator, fds[0], out_fd, target.fd, .{}, stats);
    unpacker.use_tmpfile = false;
    outcome.code = if (unpacker.run()) |code| @bitCast(code) else |_| -1;
    unpacker.deinit();
    thread.join();
    _ = try ok(linux.lseek(out_fd, 0, linux.SEEK.SET));
    outcome.reply_len = try ok(linux.read(out_fd, &outcome.reply, outcome.reply.len));
    // The fallback named the file at once, so it moved with its directory (as upstream's would
    // without its bind mount); what matters is that the copy does not report success.
    try testing.expect(exists(tmp.dir, "outside/a/f"));
    try testing.expect(!exists(tmp.dir, "target/a/f"));
    return outcome;
}

test "unpack: the O_EXCL fallback fails when the parent is moved out mid-file (ENOENT, EXDEV)" {
    const gone = try fallback_with_move(false);
    try gone.expect_reply(@intFromEnum(linux.E.NOENT), "a");
    const replaced = try fallback_with_move(true);
    try replaced.expect_reply(@intFromEnum(linux.E.XDEV), "a/f");
}

test "unpack: the O_EXCL fallback without O_TMPFILE makes the same tree" {
    var tmp = testing.tmpDir(.{ .iterate = true });
    defer tmp.cleanup();
    var stream: [143]u8 = undefined;
    wire_test.worked_example(&stream);
    const in_fd = try memfd(&stream);
    defer _ = linux.close(in_fd);
    const out_fd = try memfd("");
    defer _ = linux.close(out_fd);
    var stats: unpack.Stats = undefined;
    const unpacker = try unpack.Unpacker.init(
        testing.allocator,
        in_fd,
        out_fd,
        tmp.dir.fd,
        .{},
        &stats,
    );
    defer unpacker.deinit();
    unpacker.use_tmpfile = false;
    try testing.expectEqual(@as(u32, 0), try unpacker.run());
    const a = try lstat(tmp.dir, "d/a.txt");
    try testing.expectEqual(@as(u32, 0o100644), a.mode);
    try testing.expectEqual(@as(i64, 3), a.size);
}

test "unpack: a full disk is ENOSPC and leaves nothing visible (tmpfs of 1 MiB)" {
    var tmp = testing.tmpDir(.{ .iterate = true });
    defer tmp.cleanup();
    var path_buffer: [std.fs.max_path_bytes]u8 = undefined;
    const path = try tmp.dir.realpath(".", &path_buffer);
    path_buffer[path.len] = 0;
    const mounted = linux.mount("tmpfs", @ptrCast(path.ptr), "tmpfs", 0, @intFromPtr("size=1m"));
    if (linux.E.init(mounted) != .SUCCESS) {
        std.debug.print(
            "skipped: cannot mount a tmpfs ({s})\n",
            .{@tagName(linux.E.init(mounted))},
        );
        return error.SkipZigTest;
    }
    defer _ = linux.umount2(@ptrCast(path.ptr), linux.MNT.DETACH);
    var target = try std.fs.openDirAbsolute(path, .{ .iterate = true });
    defer target.close();

    const big = try testing.allocator.alloc(u8, 2 * 1024 * 1024);
    defer testing.allocator.free(big);
    @memset(big, 'x');
    var stream = Stream.init();
    defer stream.deinit();
    try stream.file("small", "fits");
    try stream.file("big", big);
    try stream.end();
    const outcome = try run_unpack(stream.bytes.items, target.fd, .{});
    try outcome.expect_reply(@intFromEnum(linux.E.NOSPC), "big");
    try testing.expect(!exists(target, "big"));
    try testing.expect(exists(target, "small"));
}

test "unpack: verbose prints non-directory names to fd 2" {
    var tmp = testing.tmpDir(.{ .iterate = true });
    defer tmp.cleanup();
    var stream = Stream.init();
    defer stream.deinit();
    try stream.dir("d");
    try stream.file("d/f", "");
    try stream.link("d/l", "f");
    try stream.dir("d");
    try stream.end();
    // fd 2 is the test runner's: borrow it for a pipe.
    var pipe: [2]i32 = undefined;
    _ = try ok(linux.pipe2(&pipe, .{ .CLOEXEC = true }));
    defer _ = linux.close(pipe[0]);
    const saved: i32 = @intCast(try ok(linux.dup(2)));
    _ = try ok(linux.dup2(pipe[1], 2));
    _ = linux.close(pipe[1]);
    const outcome = run_unpack(stream.bytes.items, tmp.dir.fd, .{ .verbose = true });
    _ = linux.dup2(saved, 2);
    _ = linux.close(saved);
    try (try outcome).expect_reply(0, "d");
    var printed: [64]u8 = undefined;
    const len = try ok(linux.read(pipe[0], &printed, printed.len));
    try testing.expectEqualStrings("d/f\nd/l\n", printed[0..len]);
}

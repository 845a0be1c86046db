//! Harness `unpack`: the file-copy receiver (zig/filecopy/unpack.zig) on a hostile stream, into
//! a real directory on tmpfs beside a sibling it must never touch. Properties: nothing appears
//! outside the target; every symlink made stays inside what was copied; the reply is the code
//! it returned with the CRC it counted; on success the tree is exactly what a plain reading of
//! the stream says, the counts and CRC match it; on failure every file present is whole.
//! The input's first byte picks the options: bit 0 `--allow-all-names`, bit 1 a stream buffer of
//! a few bytes instead of a page (the receiver's own is 1 MiB, too costly to fill per input).
const std = @import("std");
const linux = std.os.linux;
const unpack = @import("../filecopy/unpack.zig");
const wire = @import("../filecopy/wire.zig");
const names_fuzz = @import("names_fuzz.zig");
const model_mod = @import("unpack_model.zig");
const check = @import("check.zig");

/// A stream buffer that splits headers, names and content across reads.
const small_reads = 7;

const Places = struct { root: std.fs.Dir, target: std.fs.Dir, path: [64]u8, path_len: usize };
var places: ?Places = null;

pub fn run(bytes: []const u8) void {
    const at = places orelse blk: {
        places = make_places() catch |err| std.debug.panic("fuzz set-up: {s}", .{@errorName(err)});
        break :blk places.?;
    };
    const flags = unpack.Flags{ .allow_all_names = bytes.len > 0 and bytes[0] & 1 == 1 };
    const in_size: usize = if (bytes.len > 0 and bytes[0] & 2 == 2) small_reads else 4096;
    const stream = if (bytes.len > 0) bytes[1..] else bytes;
    var stats: unpack.Stats = undefined;
    var reply: [wire.result_message_bytes_max + 1]u8 = undefined;
    const in_fd = memfd(stream);
    defer _ = linux.close(in_fd);
    const out_fd = memfd("");
    defer _ = linux.close(out_fd);
    const job = unpack.Job{
        .in_fd = in_fd,
        .out_fd = out_fd,
        .dir_fd = at.target.fd,
        .flags = flags,
        .space_margin = 0,
    };
    const code = unpack.unpack_buffered(std.heap.c_allocator, in_size, job, &stats);
    _ = linux.lseek(out_fd, 0, linux.SEEK.SET);
    const reply_len = linux.read(out_fd, &reply, reply.len);
    check.that(linux.E.init(reply_len) == .SUCCESS, "reply unreadable", .{});

    check_outside(at.root);
    check_reply(code, stats, reply[0..reply_len]);
    var model = model_mod.Model.read(stream);
    defer model.deinit();
    check_tree(at.target, &model, code, stats);
    clear(at.target);
}

/// Runs once per process, so that it does not leave a directory behind in /dev/shm.
pub fn finish() void {
    const at = places orelse return;
    var root = at.root;
    root.close();
    var target = at.target;
    target.close();
    // At exit nobody is left to tell: a tree left behind only costs space.
    std.fs.deleteTreeAbsolute(at.path[0..at.path_len]) catch {};
    places = null;
}

fn make_places() !Places {
    var at: Places = undefined;
    const base = if (std.fs.accessAbsolute("/dev/shm", .{})) "/dev/shm" else |_| "/tmp";
    const path = try std.fmt.bufPrint(
        &at.path,
        "{s}/qrx-fuzz-unpack-{d}",
        .{ base, linux.getpid() },
    );
    at.path_len = path.len;
    // Usually absent; one that cannot be deleted fails makeDirAbsolute just below.
    std.fs.deleteTreeAbsolute(path) catch {};
    try std.fs.makeDirAbsolute(path);
    at.root = try std.fs.openDirAbsolute(path, .{ .iterate = true });
    try at.root.makeDir("target");
    try at.root.makeDir("outside");
    try at.root.writeFile(.{ .sub_path = "outside/keep", .data = "keep" });
    at.target = try at.root.openDir("target", .{ .iterate = true });
    return at;
}

fn memfd(contents: []const u8) i32 {
    const rc = linux.memfd_create("qrx-fuzz", linux.MFD.CLOEXEC);
    check.that(linux.E.init(rc) == .SUCCESS, "memfd_create failed", .{});
    const fd: i32 = @intCast(rc);
    var written: usize = 0;
    while (written < contents.len) {
        const n = linux.write(fd, contents[written..].ptr, contents.len - written);
        check.that(linux.E.init(n) == .SUCCESS, "memfd write failed", .{});
        written += n;
    }
    _ = linux.lseek(fd, 0, linux.SEEK.SET);
    return fd;
}

/// The root holds `target` and `outside` only, and `outside` only its one file.
fn check_outside(root: std.fs.Dir) void {
    var entries = root.iterate();
    var count: u32 = 0;
    while (entries.next() catch null) |entry| : (count += 1) {
        const known = std.mem.eql(u8, entry.name, "target") or std.mem.eql(
            u8,
            entry.name,
            "outside",
        );
        check.that(
            known and entry.kind == .directory,
            "{s} appeared beside the target",
            .{entry.name},
        );
    }
    check.that(count == 2, "the target's parent has {d} entries", .{count});
    var outside = root.openDir("outside", .{ .iterate = true }) catch @panic("outside vanished");
    defer outside.close();
    var inner = outside.iterate();
    count = 0;
    while (inner.next() catch null) |entry| : (count += 1) {
        check.that(std.mem.eql(u8, entry.name, "keep"), "{s} appeared outside", .{entry.name});
    }
    check.that(count == 1, "outside has {d} entries", .{count});
}

fn check_reply(code: i32, stats: unpack.Stats, reply: []const u8) void {
    // -1 alone is a stop without a result; other negative codes are replies, e.g. a directory
    // name that fails validation, (uint32)-84 as upstream (filecopy.md §2.6).
    if (code == -1) return check.that(reply.len == 0, "a fatal stop sent a reply", .{});
    check.that(reply.len >= wire.result_bytes, "reply of {d} bytes", .{reply.len});
    const header = wire.ResultHeader.decode(reply[0..wire.result_bytes]);
    check.that(
        header.error_code == @as(u32, @bitCast(code)),
        "reply code {d}, returned {d}",
        .{ header.error_code, code },
    );
    check.that(header.crc == stats.crc, "reply crc {x}, counted {x}", .{ header.crc, stats.crc });
    const returned: u32 = @bitCast(code);
    check.that(stats.code == returned, "stats code {d}, returned {d}", .{ stats.code, code });
    if (reply.len == wire.result_bytes) return;
    const ext = std.mem.readInt(u32, reply[wire.result_bytes..][0..4], .little);
    check.that(reply.len == wire.result_bytes + 4 + ext, "reply extension of {d}", .{ext});
}

/// What the walk of the target found, to compare with the unpacker's own counts.
const Tally = struct {
    seen: u64 = 0,
    files: u64 = 0,
    links: u64 = 0,
    bytes: u64 = 0,
};

fn check_tree(
    target: std.fs.Dir,
    model: *const model_mod.Model,
    code: i32,
    stats: unpack.Stats,
) void {
    var walker = target.walk(std.heap.c_allocator) catch @panic("out of memory");
    defer walker.deinit();
    var tally = Tally{};
    while (walker.next() catch |err| std.debug.panic("walk: {s}", .{@errorName(err)})) |entry| {
        tally.seen += 1;
        const expected = model.get(entry.path);
        switch (entry.kind) {
            .file => {
                tally.files += 1;
                tally.bytes += check_file(target, entry.path, expected);
            },
            .sym_link => {
                tally.links += 1;
                check_link(target, entry.path, expected);
            },
            .directory => {
                const entry_model = expected orelse std.debug.panic(
                    "dir {s} not in the stream",
                    .{entry.path},
                );
                check.that(entry_model.kind == .directory, "{s} is a directory", .{entry.path});
            },
            else => std.debug.panic("{s}: a {s}", .{ entry.path, @tagName(entry.kind) }),
        }
    }
    check_counts(tally, model, code, stats);
}

/// Returns the file's size.
fn check_file(target: std.fs.Dir, path: []const u8, expected: ?model_mod.Entry) u64 {
    const content = read_file(target, path);
    defer std.heap.c_allocator.free(content);
    const entry_model = expected orelse std.debug.panic("file {s} not in the stream", .{path});
    check.that(entry_model.kind == .regular, "{s} is a file", .{path});
    check.that(std.mem.eql(u8, content, entry_model.payload), "{s}: other content", .{path});
    return content.len;
}

fn check_link(target: std.fs.Dir, path: []const u8, expected: ?model_mod.Entry) void {
    var buffer: [std.fs.max_path_bytes]u8 = undefined;
    const link = target.readLink(path, &buffer) catch @panic("readlink");
    check.that(names_fuzz.stays_inside(path, link), "{s} -> {s} escapes", .{ path, link });
    const entry_model = expected orelse std.debug.panic("link {s} not in the stream", .{path});
    check.that(std.mem.eql(u8, link, entry_model.payload), "{s}: other target", .{path});
}

fn check_counts(tally: Tally, model: *const model_mod.Model, code: i32, stats: unpack.Stats) void {
    // A file is counted once its mode and times are set: one that failed there stays on disk.
    const uncounted = tally.files -% stats.files;
    check.that(
        uncounted == 0 or (code != 0 and uncounted == 1),
        "{d} files, {d} counted",
        .{ tally.files, stats.files },
    );
    check.that(
        tally.links == stats.symlinks,
        "{d} links, {d} counted",
        .{ tally.links, stats.symlinks },
    );
    check.that(
        tally.bytes == stats.bytes or code != 0,
        "{d} bytes on disk, {d} counted",
        .{ tally.bytes, stats.bytes },
    );
    if (code != 0) return;
    check.that(model.complete, "success on a stream without its end marker", .{});
    check.that(
        tally.seen == model.count(),
        "{d} entries on disk, {d} in the stream",
        .{ tally.seen, model.count() },
    );
    check.that(stats.crc == wire.crc32_reference(0, model.consumed), "crc of the stream", .{});
}

fn read_file(dir: std.fs.Dir, path: []const u8) []u8 {
    return dir.readFileAlloc(std.heap.c_allocator, path, 1 << 30) catch |err| {
        std.debug.panic("read {s}: {s}", .{ path, @errorName(err) });
    };
}

fn clear(target: std.fs.Dir) void {
    var entries = target.iterate();
    while (entries.next() catch null) |entry| {
        target.deleteTree(entry.name) catch |err| std.debug.panic(
            "clean {s}: {s}",
            .{ entry.name, @errorName(err) },
        );
    }
}

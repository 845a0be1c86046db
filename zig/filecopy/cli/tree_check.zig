//! qvm-copy's pre-flight (upstream's qubes-fs-tree-check, spec §4.4), as
//! src/filecopy/tree-check.ts does it, word for word: refuse what the receiver would refuse
//! anyway, count the bytes the progress shows, and say whether a name needs allow-all-names.
//! A failure that program would describe in Node's own words (an errno outside the four it
//! names), or a name that is not UTF-8 (Bun would read it differently), is `error.Unsure`,
//! and qvm-copy runs the Bun program instead.
const std = @import("std");
const linux = std.os.linux;

const names = @import("../names.zig");
const path_join = @import("../../path_join.zig");

pub const Status = enum(u8) { ok = 0, refused = 1, needs_all_names = 2 };

pub const Check = struct {
    ignore_symlinks: bool,
    total_bytes: u64 = 0,
    files: u64 = 0,
    unsafe: bool = false,
    /// Prefixes each problem.
    program: []const u8,
    problems: u32 = 0,
    /// The problems' lines, printed only once the whole check is done: a check that turns out
    /// `Unsure` runs the Bun program, which must be the only one to speak.
    text: std.ArrayListUnmanaged(u8) = .{},

    pub fn status(self: *const Check) Status {
        return if (self.problems > 0) .refused else if (self.unsafe) .needs_all_names else .ok;
    }

    fn refuse(self: *Check, parts: []const []const u8) Error!void {
        self.problems += 1;
        const allocator = std.heap.page_allocator;
        self.text.appendSlice(allocator, self.program) catch return error.Unsure;
        self.text.appendSlice(allocator, ": ") catch return error.Unsure;
        for (parts) |part| self.text.appendSlice(allocator, part) catch return error.Unsure;
        self.text.append(allocator, '\n') catch return error.Unsure;
    }
};

pub const Error = error{Unsure};

/// Strips one trailing '/', as qvm-copy does (`dir/` means `dir`).
pub fn normalize_source(path: []const u8) []const u8 {
    return if (path.len > 1 and path[path.len - 1] == '/') path[0 .. path.len - 1] else path;
}

/// Node's `basename` (posix): the last component, trailing slashes ignored.
fn basename(path: []const u8) []const u8 {
    var end = path.len;
    while (end > 0 and path[end - 1] == '/') end -= 1;
    const start = if (std.mem.lastIndexOfScalar(u8, path[0..end], '/')) |at| at + 1 else 0;
    return path[start..end];
}

pub fn check_source(check: *Check, raw: []const u8) Error!void {
    if (!std.unicode.utf8ValidateSlice(raw)) return error.Unsure;
    const source = normalize_source(raw);
    const name = basename(source);
    if (source.len == 0) return check.refuse(&.{"an empty file name cannot be copied"});
    const dots = std.mem.eql(u8, name, ".") or std.mem.eql(u8, name, "..");
    if (std.mem.eql(u8, source, "/") or name.len == 0 or dots) {
        const why = "': name the files or the directory itself, not '.', '..' or '/'";
        return check.refuse(&.{ "cannot copy '", raw, why });
    }
    try walk(check, source, name);
}

fn describe(errno: linux.E) Error![]const u8 {
    return switch (errno) {
        .NOENT => "No such file or directory",
        .ACCES => "Permission denied",
        .NOTDIR => "Not a directory",
        .LOOP => "Too many levels of symbolic links",
        else => error.Unsure,
    };
}

fn walk(check: *Check, path: []const u8, relative: []const u8) Error!void {
    var path_z: [std.fs.max_path_bytes]u8 = undefined;
    if (path.len >= path_z.len) return error.Unsure;
    @memcpy(path_z[0..path.len], path);
    path_z[path.len] = 0;
    const z: [*:0]const u8 = @ptrCast(&path_z);
    var stat: linux.Stat = undefined;
    const rc = linux.fstatat(linux.AT.FDCWD, z, &stat, linux.AT.SYMLINK_NOFOLLOW);
    if (linux.E.init(rc) != .SUCCESS) {
        return check.refuse(&.{ "cannot copy '", path, "': ", try describe(linux.E.init(rc)) });
    }
    if (!names.isSafeForDisplay(basename(relative))) check.unsafe = true;
    const kind = stat.mode & linux.S.IFMT;
    if (kind == linux.S.IFLNK) return symlink(check, z, path, relative, stat);
    if (kind == linux.S.IFDIR) return directory(check, z, path, relative);
    if (kind == linux.S.IFREG) {
        check.total_bytes += @intCast(stat.size);
        check.files += 1;
    }
    // fifos, sockets, devices: the sender skips them, so do we.
}

fn symlink(
    check: *Check,
    z: [*:0]const u8,
    path: []const u8,
    relative: []const u8,
    stat: linux.Stat,
) Error!void {
    if (check.ignore_symlinks) return;
    var target_buffer: [std.fs.max_path_bytes]u8 = undefined;
    const rc = linux.readlink(z, &target_buffer, target_buffer.len);
    if (linux.E.init(rc) != .SUCCESS) {
        const why = try describe(linux.E.init(rc));
        return check.refuse(&.{ "cannot read the link '", path, "': ", why });
    }
    const target = target_buffer[0..rc];
    if (!std.unicode.utf8ValidateSlice(target)) return error.Unsure;
    // The receiver's rules, judged on the name it will see (relative to the argument's parent).
    names.validateSymlink(relative, target, .{ .allow_all_names = true }) catch {
        if (std.mem.indexOfScalar(u8, relative, '/') != null) {
            const why = "': it would point outside the copied tree";
            return check.refuse(&.{ "cannot copy the link '", path, "' -> '", target, why });
        }
        const why = "' itself (a top-level symlink): copy what it points to, or its directory";
        return check.refuse(&.{ "cannot copy the link '", path, why });
    };
    if (!names.isSafeForDisplay(target)) check.unsafe = true;
    check.total_bytes += @intCast(stat.size);
    check.files += 1;
}

/// Reads every entry first, as readdirSync does, then walks them (no fd stays open below).
fn directory(check: *Check, z: [*:0]const u8, path: []const u8, relative: []const u8) Error!void {
    const allocator = std.heap.page_allocator;
    var entries = std.ArrayListUnmanaged(u8){};
    defer entries.deinit(allocator);
    if (read_entries(z, &entries)) |errno| {
        const text = try describe(errno);
        return check.refuse(&.{ "cannot read the directory '", path, "': ", text });
    }
    var child_path: [std.fs.max_path_bytes]u8 = undefined;
    var child_relative: [std.fs.max_path_bytes]u8 = undefined;
    var iterator = std.mem.splitScalar(u8, entries.items, 0);
    while (iterator.next()) |entry| {
        if (entry.len == 0) continue;
        if (!std.unicode.utf8ValidateSlice(entry)) return error.Unsure;
        const joined = path_join.join_normalized(&child_path, &.{ path, entry }) orelse
            return error.Unsure;
        const rel = std.fmt.bufPrint(&child_relative, "{s}/{s}", .{ relative, entry }) catch
            return error.Unsure;
        try walk(check, joined, rel);
    }
}

/// The directory's names (without `.` and `..`), each followed by a NUL; an errno on failure.
fn read_entries(z: [*:0]const u8, out: *std.ArrayListUnmanaged(u8)) ?linux.E {
    const flags = linux.O{ .ACCMODE = .RDONLY, .DIRECTORY = true, .CLOEXEC = true };
    const opened = linux.open(z, flags, 0);
    if (linux.E.init(opened) != .SUCCESS) return linux.E.init(opened);
    const fd: i32 = @intCast(opened);
    defer _ = linux.close(fd);
    var buffer: [8192]u8 align(8) = undefined;
    while (true) {
        const rc = linux.getdents64(fd, &buffer, buffer.len);
        if (linux.E.init(rc) != .SUCCESS) return linux.E.init(rc);
        if (rc == 0) return null;
        var offset: usize = 0;
        while (offset < rc) {
            const record: *align(1) const linux.dirent64 = @ptrCast(&buffer[offset]);
            offset += record.reclen;
            const name = std.mem.sliceTo(@as([*:0]const u8, @ptrCast(&record.name)), 0);
            if (std.mem.eql(u8, name, ".") or std.mem.eql(u8, name, "..")) continue;
            out.appendSlice(std.heap.page_allocator, name) catch return .NOMEM;
            out.append(std.heap.page_allocator, 0) catch return .NOMEM;
        }
    }
}

test "tree check: sources and base names as Node reads them" {
    try std.testing.expectEqualStrings("dir", normalize_source("dir/"));
    try std.testing.expectEqualStrings("/", normalize_source("/"));
    try std.testing.expectEqualStrings("dir/", normalize_source("dir//"));
    try std.testing.expectEqualStrings("dir", basename("a/dir/"));
    try std.testing.expectEqualStrings("", basename("/"));
    try std.testing.expectEqualStrings("..", basename("a/.."));
}

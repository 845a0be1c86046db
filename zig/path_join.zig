//! Node's `path.join` for the paths the native programs build, where it would leave them as
//! they are: a part it would normalise (an empty, `.` or `..` component, a trailing slash) is
//! refused, and the program runs its Bun version instead, so both always use the same path.
const std = @import("std");

/// Node's `path.join` of `parts`, for parts it would not change: null when one holds an empty,
/// `.` or `..` component or a trailing slash, which `join` would normalise away.
pub fn join(buffer: []u8, parts: []const []const u8) ?[]const u8 {
    var len: usize = 0;
    for (parts, 0..) |part, index| {
        if (!clean(part, index == 0)) return null;
        const separator: usize = if (index == 0) 0 else 1;
        if (len + separator + part.len > buffer.len) return null;
        if (separator == 1) buffer[len] = '/';
        @memcpy(buffer[len + separator ..][0..part.len], part);
        len += separator + part.len;
    }
    return buffer[0..len];
}

fn clean(part: []const u8, first: bool) bool {
    if (part.len == 0) return false;
    var components = std.mem.splitScalar(u8, part, '/');
    var index: usize = 0;
    while (components.next()) |component| : (index += 1) {
        // Only a first part's leading slash (an absolute path) makes an empty component.
        if (component.len == 0 and first and index == 0 and part.len > 1) continue;
        if (component.len == 0) return false;
        if (std.mem.eql(u8, component, ".") or std.mem.eql(u8, component, "..")) return false;
    }
    return true;
}

test "path join: joined only where path.join would not change them" {
    var buffer: [32]u8 = undefined;
    try std.testing.expectEqualStrings("/a/b/c", join(&buffer, &.{ "/a", "b/c" }).?);
    try std.testing.expectEqualStrings("a/b", join(&buffer, &.{ "a", "b" }).?);
    for ([_][]const u8{ "/a/", "/a//b", "/a/../b", "./a", "/", "" }) |bad| {
        try std.testing.expect(join(&buffer, &.{ bad, "x" }) == null);
    }
    try std.testing.expect(join(&buffer, &.{ "/a", "/b" }) == null);
    try std.testing.expect(join(&buffer, &.{ "/a", "b" ** 40 }) == null);
}

/// Node's `path.join` itself (posix): the parts joined with `/`, then normalised (empty and `.`
/// components dropped, `..` applied, one trailing slash kept). Null when it does not fit.
pub fn join_normalized(buffer: []u8, parts: []const []const u8) ?[]const u8 {
    var joined_buffer: [std.fs.max_path_bytes * 2]u8 = undefined;
    var len: usize = 0;
    for (parts) |part| {
        if (part.len == 0) continue;
        const separator: usize = if (len == 0) 0 else 1;
        if (len + separator + part.len > joined_buffer.len) return null;
        if (separator == 1) joined_buffer[len] = '/';
        @memcpy(joined_buffer[len + separator ..][0..part.len], part);
        len += separator + part.len;
    }
    return normalize(buffer, joined_buffer[0..len]);
}

fn normalize(buffer: []u8, path: []const u8) ?[]const u8 {
    if (path.len == 0) return copy(buffer, ".");
    const absolute = path[0] == '/';
    const trailing = path[path.len - 1] == '/';
    var segments: [std.fs.max_path_bytes / 2 + 1][]const u8 = undefined;
    var count: usize = 0;
    var components = std.mem.splitScalar(u8, path, '/');
    while (components.next()) |component| {
        if (component.len == 0 or std.mem.eql(u8, component, ".")) continue;
        if (std.mem.eql(u8, component, "..")) {
            if (count > 0 and !std.mem.eql(u8, segments[count - 1], "..")) {
                count -= 1;
                continue;
            }
            if (absolute) continue;
        }
        if (count == segments.len) return null;
        segments[count] = component;
        count += 1;
    }
    if (count == 0) return copy(buffer, if (absolute) "/" else if (trailing) "./" else ".");
    var len: usize = 0;
    for (segments[0..count], 0..) |segment, index| {
        const slash = absolute or index > 0;
        if (len + @intFromBool(slash) + segment.len > buffer.len) return null;
        if (slash) buffer[len] = '/';
        len += @intFromBool(slash);
        @memcpy(buffer[len..][0..segment.len], segment);
        len += segment.len;
    }
    if (trailing) {
        if (len == buffer.len) return null;
        buffer[len] = '/';
        len += 1;
    }
    return buffer[0..len];
}

fn copy(buffer: []u8, text: []const u8) ?[]const u8 {
    if (text.len > buffer.len) return null;
    @memcpy(buffer[0..text.len], text);
    return buffer[0..text.len];
}

test "path join: normalised as Node's path.join" {
    var buffer: [64]u8 = undefined;
    const cases = [_][3][]const u8{
        .{ "./a", "x", "a/x" },
        .{ "a/", "x", "a/x" },
        .{ "/a/../b", "x", "/b/x" },
        .{ "../a", "x", "../a/x" },
        .{ "a/..", "..", ".." },
        .{ "/", "..", "/" },
        .{ ".", ".", "." },
        .{ "a", "", "a" },
        .{ "a//b/", "c/", "a/b/c/" },
    };
    for (cases) |case| {
        const joined = join_normalized(&buffer, &.{ case[0], case[1] }).?;
        try std.testing.expectEqualStrings(case[2], joined);
    }
}

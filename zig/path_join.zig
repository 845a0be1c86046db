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

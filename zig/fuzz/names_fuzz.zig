//! Harness `names`: the receiver's name and symlink rules (zig/filecopy/names.zig) against an
//! obviously-correct lexical model. An accepted name is a relative path of real components; an
//! accepted symlink resolves, component by component, without leaving its top-level directory;
//! the UTF-8 decoder agrees with std.unicode on every sequence it accepts.
const std = @import("std");
const names = @import("../filecopy/names.zig");
const Input = @import("input.zig").Input;
const check = @import("check.zig");

pub fn run(bytes: []const u8) void {
    var input = Input.init(bytes);
    const flags = names.Flags{ .allow_all_names = input.int(u8) & 1 == 1 };
    const name_len = input.int(u8);
    const name = input.take(name_len);
    const target = input.rest();

    const path_ok = if (names.validatePath(name, flags)) |_| true else |_| false;
    if (path_ok) check.that(structurally_valid(name), "accepted path {any}", .{name});
    if (names.validateSymlink(name, target, flags)) |_| {
        check.that(path_ok, "symlink accepted with a refused name {any}", .{name});
        check.that(stays_inside(name, target), "symlink {any} -> {any} escapes", .{ name, target });
    } else |_| {}
    check_decoder(name);
    check_decoder(target);
}

/// Non-empty, relative, and every component a real name (not empty, `.` or `..`, no NUL).
fn structurally_valid(name: []const u8) bool {
    if (name.len == 0 or name[0] == '/') return false;
    var components = std.mem.splitScalar(u8, name, '/');
    while (components.next()) |component| {
        if (component.len == 0) return false;
        if (std.mem.eql(u8, component, ".") or std.mem.eql(u8, component, "..")) return false;
        if (std.mem.indexOfScalar(u8, component, 0) != null) return false;
    }
    return true;
}

/// Resolves `target` lexically from the link's directory: no component may climb to or above
/// the transfer's root (depth 0), so the link stays inside what was copied.
pub fn stays_inside(name: []const u8, target: []const u8) bool {
    if (target.len > 0 and target[0] == '/') return false;
    var depth: usize = std.mem.count(u8, name, "/"); // components of the link's directory
    var components = std.mem.splitScalar(u8, target, '/');
    while (components.next()) |component| {
        if (component.len == 0 or std.mem.eql(u8, component, ".")) continue;
        if (std.mem.eql(u8, component, "..")) {
            if (depth <= 1) return false;
            depth -= 1;
        } else {
            depth += 1;
        }
    }
    return true;
}

fn check_decoder(bytes: []const u8) void {
    var index: usize = 0;
    while (index < bytes.len) : (index += 1) {
        const decoded = names.decodeUtf8(bytes[index..]) orelse continue;
        const sequence = bytes[index..][0..decoded.length];
        const expected = std.unicode.utf8Decode(sequence) catch {
            check.that(false, "decodeUtf8 accepted invalid {any}", .{sequence});
            unreachable;
        };
        check.that(expected == decoded.code_point, "decodeUtf8 {any}: {d} != {d}", .{
            sequence, decoded.code_point, expected,
        });
    }
}

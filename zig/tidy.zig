//! The Zig rules `zig build test` enforces over build.zig and every `.zig` file under zig/
//! (TigerBeetle's src/tidy.zig is the model), each violation reported as `file:line: message`:
//! - a line is at most 100 columns (Unicode code points), holds no tab and no trailing blank;
//! - a function is at most 70 lines, from the line of its `fn` (or `pub fn`) to the line of its
//!   closing brace. Test blocks are exempt: a test reads top to bottom as one scenario, and
//!   cutting it into helpers only to meet a count hides what it checks. So is a function that
//!   returns a `type` (a generic container): the functions inside it are checked one by one;
//! - `catch {}` swallows an error, so it carries a comment saying why, on its line or the one
//!   before.
//! The build runs this test from the repository root (build.zig sets its working directory).
const std = @import("std");
const Ast = std.zig.Ast;

const line_columns_max = 100;
const function_lines_max = 70;

/// Not checked yet: the ABI work (issue 18) rewrites it, and tidies it as it does.
fn awaiting_abi_rewrite(path: []const u8) bool {
    return std.mem.eql(u8, path, "zig/lib.zig");
}

const Violation = struct {
    line: usize,
    message: []const u8,
};

const Violations = std.ArrayList(Violation);

test "tidy: build.zig and every Zig source under zig/" {
    const allocator = std.testing.allocator;
    var paths = std.ArrayList([]const u8).init(allocator);
    defer {
        for (paths.items) |path| allocator.free(path);
        paths.deinit();
    }
    try paths.append(try allocator.dupe(u8, "build.zig"));
    try collect_zig_paths(allocator, "zig", &paths);
    try std.testing.expect(paths.items.len > 1);

    var failed = false;
    for (paths.items) |path| {
        if (awaiting_abi_rewrite(path)) continue;
        const source = try std.fs.cwd().readFileAllocOptions(allocator, path, 1 << 24, null, 1, 0);
        defer allocator.free(source);
        var violations = Violations.init(allocator);
        defer violations.deinit();
        try check(allocator, source, &violations);
        for (violations.items) |violation| {
            std.debug.print("{s}:{d}: {s}\n", .{ path, violation.line, violation.message });
            failed = true;
        }
    }
    if (failed) return error.TidyViolations;
}

fn collect_zig_paths(
    allocator: std.mem.Allocator,
    root: []const u8,
    paths: *std.ArrayList([]const u8),
) !void {
    var dir = try std.fs.cwd().openDir(root, .{ .iterate = true });
    defer dir.close();
    var walker = try dir.walk(allocator);
    defer walker.deinit();
    while (try walker.next()) |entry| {
        if (entry.kind != .file or !std.mem.endsWith(u8, entry.path, ".zig")) continue;
        const path = try std.fs.path.join(allocator, &.{ root, entry.path });
        errdefer allocator.free(path);
        try paths.append(path);
    }
}

/// Appends every violation in `source` (line numbers from 1) to `violations`.
fn check(allocator: std.mem.Allocator, source: [:0]const u8, violations: *Violations) !void {
    try check_lines(source, violations);
    var tree = try Ast.parse(allocator, source, .zig);
    defer tree.deinit(allocator);
    if (tree.errors.len > 0) return violations.append(.{ .line = 1, .message = "does not parse" });
    try check_functions(tree, violations);
    try check_empty_catches(tree, violations);
}

fn check_lines(source: []const u8, violations: *Violations) !void {
    var lines = std.mem.splitScalar(u8, source, '\n');
    var number: usize = 1;
    while (lines.next()) |line| : (number += 1) {
        const columns = std.unicode.utf8CountCodepoints(line) catch line.len;
        if (columns > line_columns_max) {
            try violations.append(.{ .line = number, .message = "line longer than 100 columns" });
        }
        if (std.mem.indexOfScalar(u8, line, '\t') != null) {
            try violations.append(.{ .line = number, .message = "tab character" });
        }
        if (line.len > 0 and (line[line.len - 1] == ' ' or line[line.len - 1] == '\r')) {
            try violations.append(.{ .line = number, .message = "trailing whitespace" });
        }
    }
}

fn check_functions(tree: Ast, violations: *Violations) !void {
    for (tree.nodes.items(.tag), 0..) |tag, index| {
        if (tag != .fn_decl) continue;
        const node: Ast.Node.Index = @intCast(index);
        if (returns_type(tree, node)) continue;
        const first = line_of(tree, tree.firstToken(node));
        const last = line_of(tree, tree.lastToken(node));
        if (last - first + 1 > function_lines_max) {
            try violations.append(.{ .line = first, .message = "function longer than 70 lines" });
        }
    }
}

fn returns_type(tree: Ast, fn_decl: Ast.Node.Index) bool {
    var buffer: [1]Ast.Node.Index = undefined;
    const proto = tree.fullFnProto(&buffer, tree.nodes.items(.data)[fn_decl].lhs).?;
    const return_type = proto.ast.return_type;
    if (return_type == 0 or tree.nodes.items(.tag)[return_type] != .identifier) return false;
    return std.mem.eql(u8, tree.tokenSlice(tree.nodes.items(.main_token)[return_type]), "type");
}

fn check_empty_catches(tree: Ast, violations: *Violations) !void {
    const tags = tree.tokens.items(.tag);
    for (tags, 0..) |tag, index| {
        if (tag != .keyword_catch) continue;
        var next = index + 1;
        // `catch |err| {}` swallows as much as `catch {}`.
        if (tags[next] == .pipe) next += 3;
        if (tags[next] != .l_brace or tags[next + 1] != .r_brace) continue;
        const line = line_of(tree, @intCast(index));
        if (!commented(tree.source, line)) {
            try violations.append(.{ .line = line, .message = "`catch {}` without a comment why" });
        }
    }
}

/// Whether line `number` or the line before it holds a `//` comment.
fn commented(source: []const u8, number: usize) bool {
    var lines = std.mem.splitScalar(u8, source, '\n');
    var current: usize = 1;
    while (lines.next()) |line| : (current += 1) {
        if (current + 1 < number) continue;
        if (std.mem.indexOf(u8, line, "//") != null) return true;
        if (current == number) return false;
    }
    return false;
}

fn line_of(tree: Ast, token: Ast.TokenIndex) usize {
    const start = tree.tokens.items(.start)[token];
    return std.mem.count(u8, tree.source[0..start], "\n") + 1;
}

fn expect_violations(source: [:0]const u8, expected: []const Violation) !void {
    var violations = Violations.init(std.testing.allocator);
    defer violations.deinit();
    try check(std.testing.allocator, source, &violations);
    try std.testing.expectEqual(expected.len, violations.items.len);
    for (expected, violations.items) |want, got| {
        try std.testing.expectEqual(want.line, got.line);
        try std.testing.expectEqualStrings(want.message, got.message);
    }
}

test "tidy: a tidy source passes" {
    try expect_violations(
        \\const std = @import("std");
        \\fn add(a: u32, b: u32) u32 {
        \\    return a + b;
        \\}
        \\
    , &.{});
}

test "tidy: lines over 100 columns, tabs and trailing blanks are reported by line" {
    const long = "const x = \"" ++ "a" ** 88 ++ "\";\n";
    try std.testing.expectEqual(101, long.len - 1);
    // 100 columns of two-byte code points: within the limit though longer in bytes.
    const wide = "//" ++ "é" ** 98 ++ "\n";
    try expect_violations("const a = 1;\n" ++ long ++ wide ++ "const b = 1; \n\tconst c = 2;\n", &.{
        .{ .line = 2, .message = "line longer than 100 columns" },
        .{ .line = 4, .message = "trailing whitespace" },
        .{ .line = 5, .message = "tab character" },
    });
}

test "tidy: a function over 70 lines is reported at its first line, a test block is not" {
    const body = "    _ = 0;\n" ** 68;
    try expect_violations("fn fits() void {\n" ++ body ++ "}\n", &.{});
    try expect_violations("const a = 1;\npub fn long() void {\n" ++ body ++ "    _ = 1;\n}\n", &.{
        .{ .line = 2, .message = "function longer than 70 lines" },
    });
    try expect_violations("test \"long\" {\n" ++ body ++ body ++ "}\n", &.{});
}

test "tidy: a generic container is not one function, but its own functions are checked" {
    const body = "        _ = 0;\n" ** 69;
    try expect_violations("fn Box(comptime T: type) type {\n    return struct {\n" ++
        "        fn small() void {}\n" ++ "        fn large() void {\n" ++ body ++
        "        }\n    };\n}\n", &.{.{ .line = 4, .message = "function longer than 70 lines" }});
}

test "tidy: `catch {}` needs a comment on its line or the line before" {
    try expect_violations(
        \\fn f() void {
        \\    g() catch {};
        \\    g() catch |err| {};
        \\    g() catch {}; // the peer may be gone already
        \\    // nothing to do when the pipe is full
        \\    g() catch {};
        \\    g() catch |err| return err;
        \\}
        \\
    , &.{
        .{ .line = 2, .message = "`catch {}` without a comment why" },
        .{ .line = 3, .message = "`catch {}` without a comment why" },
    });
}

test "tidy: a source that does not parse is reported" {
    try expect_violations("fn (\n", &.{.{ .line = 1, .message = "does not parse" }});
}

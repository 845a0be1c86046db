//! qfile-unpacker's command line (spec §3.1), both of upstream's forms, read exactly as
//! src/filecopy/unpacker-args.ts reads it (the errors word for word):
//!   modern (getopt "+vw:"): [--allow-all-names|--no-allow-all-names] [-v|--verbose]
//!                           [-w MARGIN|--wait-for-space MARGIN] [UID [DIR]]
//!   legacy (first argument starts with a digit, at least two): UID DIR [-v] [-w [MARGIN]]
const std = @import("std");

pub const usage = "usage: qfile-unpacker [--allow-all-names|--no-allow-all-names] " ++
    "[-v|--verbose] [-w MARGIN|--wait-for-space MARGIN] [UID [DIR]]";

const int_max: u64 = std.math.maxInt(i32);

pub const Args = struct {
    allow_all_names: bool = false,
    verbose: bool = false,
    /// Free bytes to keep beyond each file (0: do not wait).
    wait_for_space: u32 = 0,
    uid: ?u32 = null,
    dir: ?[]const u8 = null,
};

pub const Parsed = union(enum) {
    ok: Args,
    /// The error's text, in `Error.buffer`.
    err: []const u8,
};

pub const Error = struct { buffer: [512]u8 = undefined };

fn digits(text: []const u8) bool {
    if (text.len == 0) return false;
    for (text) |c| if (c < '0' or c > '9') return false;
    return true;
}

fn margin(text: ?[]const u8) ?u32 {
    const value = text orelse return null;
    if (!digits(value)) return null;
    const parsed = std.fmt.parseInt(u64, value, 10) catch return null;
    return if (parsed >= 1 and parsed <= int_max) @intCast(parsed) else null;
}

fn uid_of(text: []const u8) ?u32 {
    if (!digits(text)) return null;
    return std.fmt.parseInt(u32, text, 10) catch null;
}

fn fail(err: *Error, comptime fmt: []const u8, args: anytype) Parsed {
    return .{ .err = std.fmt.bufPrint(&err.buffer, fmt, args) catch err.buffer[0..] };
}

fn legacy(args: []const []const u8, err: *Error) Parsed {
    const uid = uid_of(args[0]) orelse return fail(err, "invalid UID '{s}'", .{args[0]});
    var out = Args{ .uid = uid, .dir = args[1] };
    var index: usize = 2;
    while (index < args.len) : (index += 1) {
        const arg = args[index];
        if (std.mem.eql(u8, arg, "-v")) {
            out.verbose = true;
        } else if (std.mem.eql(u8, arg, "-w")) {
            const value = margin(if (index + 1 < args.len) args[index + 1] else null);
            out.wait_for_space = value orelse 1;
            if (value != null) index += 1;
        } else return fail(err, "unexpected argument '{s}'", .{arg});
    }
    return .{ .ok = out };
}

/// `-w M`, `-wM`, `--wait-for-space M`, `--wait-for-space=M` (anything else: null).
fn margin_text(arg: []const u8, args: []const []const u8, index: usize) ?[]const u8 {
    if (std.mem.eql(u8, arg, "-w") or std.mem.eql(u8, arg, "--wait-for-space")) {
        return if (index + 1 < args.len) args[index + 1] else null;
    }
    const long = "--wait-for-space=";
    if (std.mem.startsWith(u8, arg, long)) return arg[long.len..];
    return if (std.mem.startsWith(u8, arg, "--")) null else arg[2..];
}

/// The modern form's options; the index of the first positional argument.
const Start = union(enum) { start: usize, err: Parsed };

fn options(args: []const []const u8, out: *Args, err: *Error) Start {
    var index: usize = 0;
    while (index < args.len) : (index += 1) {
        const arg = args[index];
        if (std.mem.eql(u8, arg, "--")) return .{ .start = index + 1 };
        if (arg.len == 0 or arg[0] != '-' or std.mem.eql(u8, arg, "-")) return .{ .start = index };
        if (std.mem.eql(u8, arg, "--allow-all-names")) {
            out.allow_all_names = true;
        } else if (std.mem.eql(u8, arg, "--no-allow-all-names")) {
            out.allow_all_names = false;
        } else if (std.mem.eql(u8, arg, "--verbose") or std.mem.eql(u8, arg, "-v")) {
            out.verbose = true;
        } else if (std.mem.startsWith(u8, arg, "-w") or
            std.mem.startsWith(u8, arg, "--wait-for-space"))
        {
            const value = margin(margin_text(arg, args, index));
            if (std.mem.eql(u8, arg, "-w") or std.mem.eql(u8, arg, "--wait-for-space")) index += 1;
            const fmt = "{s} needs a MARGIN from 1 to {d} bytes";
            out.wait_for_space = value orelse return .{ .err = fail(err, fmt, .{ arg, int_max }) };
        } else if (std.mem.eql(u8, arg, "--allow-unsafe-symlinks") or
            std.mem.eql(u8, arg, "--no-allow-unsafe-symlinks"))
        {
            const fmt = "{s} is not supported (qubes.Filecopy never uses it)";
            return .{ .err = fail(err, fmt, .{arg}) };
        } else return .{ .err = fail(err, "unknown option {s}", .{arg}) };
    }
    return .{ .start = index };
}

pub fn parse(args: []const []const u8, err: *Error) Parsed {
    const old_form = args.len >= 2 and args[0].len > 0 and std.ascii.isDigit(args[0][0]);
    if (old_form) return legacy(args, err);
    var out = Args{};
    const start = switch (options(args, &out, err)) {
        .start => |start| start,
        .err => |parsed| return parsed,
    };
    const positional = args[@min(start, args.len)..];
    if (positional.len > 2) return fail(err, "too many arguments", .{});
    if (positional.len > 0) {
        const uid = positional[0];
        out.uid = uid_of(uid) orelse return fail(err, "invalid UID '{s}'", .{uid});
    }
    if (positional.len > 1) out.dir = positional[1];
    return .{ .ok = out };
}

test "unpacker args: both forms and their errors" {
    var err = Error{};
    const modern = parse(&.{ "--allow-all-names", "-v", "-w", "5", "1000", "/d" }, &err).ok;
    try std.testing.expect(modern.allow_all_names and modern.verbose);
    try std.testing.expectEqual(@as(u32, 5), modern.wait_for_space);
    try std.testing.expectEqual(@as(?u32, 1000), modern.uid);
    try std.testing.expectEqualStrings("/d", modern.dir.?);
    const old = parse(&.{ "1000", "/d", "-v", "-w" }, &err).ok;
    try std.testing.expect(old.verbose and old.wait_for_space == 1);
    const long = parse(&.{"--wait-for-space=7"}, &err).ok;
    try std.testing.expectEqual(@as(u32, 7), long.wait_for_space);
    try std.testing.expectEqual(@as(u32, 8), parse(&.{"-w8"}, &err).ok.wait_for_space);
    try std.testing.expectEqualStrings("unknown option -x", parse(&.{"-x"}, &err).err);
    const many = parse(&.{ "--", "1", "2", "3" }, &err).err;
    try std.testing.expectEqualStrings("too many arguments", many);
    try std.testing.expectEqualStrings("invalid UID 'me'", parse(&.{"me"}, &err).err);
    try std.testing.expectEqualStrings("invalid UID '1x'", parse(&.{ "1x", "/d" }, &err).err);
    try std.testing.expectEqualStrings(
        "-w needs a MARGIN from 1 to 2147483647 bytes",
        parse(&.{ "-w", "0" }, &err).err,
    );
    const extra = parse(&.{ "1", "/d", "x" }, &err).err;
    try std.testing.expectEqualStrings("unexpected argument 'x'", extra);
}

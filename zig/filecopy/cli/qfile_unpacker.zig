//! `qfile-unpacker`, natively (zig-out/bin/qfile-unpacker, what bin/qfile-unpacker runs when it
//! is built): src/cli/qfile-unpacker.ts without Bun's start, since the receiver's work is all
//! in zig/filecopy/unpack.zig already. The same arguments, messages and exit statuses; an
//! argument or environment the Bun program would read differently (text that is not UTF-8, no
//! HOME, a HOME that path.join would normalise) runs that program instead.
const std = @import("std");
const linux = std.os.linux;

const bun_cli = @import("../../client_host/bun_cli.zig");
const path_join = @import("../../path_join.zig");
const diag = @import("../../diag.zig");
const unpack = @import("../unpack.zig");
const messages = @import("messages.zig");
const unpacker_args = @import("unpacker_args.zig");

const program = "qfile-unpacker";
const args_max = 256;

pub fn main() noreturn {
    const argv = std.os.argv[1..];
    var strings: [args_max][]const u8 = undefined;
    if (argv.len > args_max) fallback(argv);
    // The help text is the Bun program's alone.
    if (argv.len > 0 and is_help(std.mem.span(argv[0]))) fallback(argv);
    for (argv, 0..) |arg, i| {
        strings[i] = std.mem.span(arg);
        if (!std.unicode.utf8ValidateSlice(strings[i])) fallback(argv);
    }
    var err = unpacker_args.Error{};
    const args = switch (unpacker_args.parse(strings[0..argv.len], &err)) {
        .ok => |args| args,
        .err => |text| die(&.{ text, "\n", unpacker_args.usage }),
    };
    if (args.uid) |uid| {
        const own = linux.getuid();
        var buffer: [96]u8 = undefined;
        const fmt = "UID {d} is not the user this runs as ({d}); it never changes users";
        if (uid != own) die(&.{std.fmt.bufPrint(&buffer, fmt, .{ uid, own }) catch unreachable});
    }
    var dir_buffer: [std.fs.max_path_bytes]u8 = undefined;
    const dir = args.dir orelse default_dir(&dir_buffer, argv);
    const dir_fd = open_dir(dir);
    var stats: unpack.Stats = undefined;
    const flags = unpack.Flags{ .allow_all_names = args.allow_all_names, .verbose = args.verbose };
    const pattern = unpack.unpack_waiting(0, 1, dir_fd, flags, args.wait_for_space, &stats);
    _ = linux.close(dir_fd);
    if (pattern == -1) {
        const message = diag.message();
        die(&.{if (message.len > 0) message else "stopped without a result"});
    }
    // The receiver's code, truncated to 8 bits as by the kernel.
    const status: u8 = @truncate(@as(u32, @bitCast(pattern)));
    linux.exit_group(status);
}

/// ~/QubesIncoming/<source domain>, both made 0700 when missing (errors are left to the open).
fn default_dir(buffer: []u8, argv: []const [*:0]const u8) []const u8 {
    const source = bun_cli.getenv("QREXEC_REMOTE_DOMAIN") orelse "";
    if (source.len == 0) die(&.{"Fatal error: Cannot get remote domain name"});
    if (!std.unicode.utf8ValidateSlice(source)) fallback(argv);
    const bad = std.mem.indexOfScalar(u8, source, '/') != null or
        std.mem.eql(u8, source, ".") or std.mem.eql(u8, source, "..");
    if (bad) die(&.{ "'", source, "' is not a domain name" });
    const home = bun_cli.getenv("HOME") orelse "";
    if (home.len == 0 or !std.unicode.utf8ValidateSlice(home)) fallback(argv);
    var incoming_buffer: [std.fs.max_path_bytes]u8 = undefined;
    const incoming = path_join.join(&incoming_buffer, &.{ home, "QubesIncoming" }) orelse
        fallback(argv);
    make_dir(incoming);
    const full = path_join.join(buffer, &.{ incoming, source }) orelse fallback(argv);
    make_dir(full);
    return full;
}

fn make_dir(dir: []const u8) void {
    var path: [std.fs.max_path_bytes + 1]u8 = undefined;
    if (dir.len >= path.len) return;
    @memcpy(path[0..dir.len], dir);
    path[dir.len] = 0;
    _ = linux.mkdir(@ptrCast(&path), 0o700);
}

fn open_dir(dir: []const u8) i32 {
    var path: [std.fs.max_path_bytes + 1]u8 = undefined;
    if (dir.len >= path.len) fatal_open(dir, .NAMETOOLONG);
    @memcpy(path[0..dir.len], dir);
    path[dir.len] = 0;
    const flags = linux.O{ .ACCMODE = .RDONLY, .DIRECTORY = true, .CLOEXEC = true };
    const rc = linux.open(@ptrCast(&path), flags, 0);
    if (linux.E.init(rc) != .SUCCESS) fatal_open(dir, linux.E.init(rc));
    return @intCast(rc);
}

fn fatal_open(dir: []const u8, errno: linux.E) noreturn {
    var message: [std.fs.max_path_bytes + 32]u8 = undefined;
    const text = std.fmt.bufPrint(&message, "Error chdir to {s}", .{dir}) catch unreachable;
    messages.write_fatal(program, text, @intFromEnum(errno));
    linux.exit_group(1);
}

fn die(parts: []const []const u8) noreturn {
    messages.write_stderr(program ++ ": ");
    for (parts) |part| messages.write_stderr(part);
    messages.write_stderr("\n");
    linux.exit_group(1);
}

fn is_help(arg: []const u8) bool {
    return std.mem.eql(u8, arg, "-h") or std.mem.eql(u8, arg, "--help");
}

fn fallback(argv: []const [*:0]const u8) noreturn {
    bun_cli.exec_with_separator(program, argv);
}

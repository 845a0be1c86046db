//! The command lines the native qrexec-client runs itself: a dom0 -> VM call with `-d`,
//! `--socket-dir`, `-t`, `-T`, `-E`/`--no-exit-code`, `-w` and one `-p`/`--prefix-data`, options
//! first and the command last, every value as commander (src/cli/qrexec-client.ts) would read
//! it. Anything else (help, errors, `-l`, `-e`, `-c`, `-k`, dom0 as the target, an unusual
//! spelling) is null, and the Bun CLI runs it: it alone decides what is wrong and says so.
const std = @import("std");

pub const default_socket_dir = "/var/run/qubes";
const default_timeout_s: u32 = 10;
/// Above this many seconds the timeout in ms would not fit the pump's i32.
const timeout_s_max: u32 = 2_000_000;

pub const Call = struct {
    target: []const u8,
    command: []const u8,
    socket_dir: []const u8,
    filter_stdout: bool = false,
    filter_stderr: bool = false,
    no_exit_code: bool = false,
    /// Negative: no limit (`-w 0`).
    connect_timeout_ms: i32 = default_timeout_s * 1000,
    prefix: ?[]const u8 = null,
};

const dom0_names = [_][]const u8{ "dom0", "@adminvm", "uuid:00000000-0000-0000-0000-000000000000" };

/// `env_socket_dir` is $QRX_SOCKET_DIR (commander's default for --socket-dir).
pub fn parse(args: []const []const u8, env_socket_dir: ?[]const u8) ?Call {
    if (args.len == 0) return null;
    var call = Call{ .target = "", .command = args[args.len - 1], .socket_dir = "" };
    if (!operand(call.command)) return null;
    var index: usize = 0;
    while (index < args.len - 1) : (index += 1) {
        const arg = args[index];
        if (arg.len < 2 or arg[0] != '-') return null;
        if (arg[1] == '-') {
            if (!long_option(&call, args, &index)) return null;
        } else if (!short_option(&call, args, &index)) return null;
    }
    // The command's own index was taken as an option's value.
    if (index != args.len - 1) return null;
    if (call.target.len == 0 or std.mem.indexOfScalar(u8, call.target, '/') != null) return null;
    for (dom0_names) |name| if (std.mem.eql(u8, call.target, name)) return null;
    if (call.socket_dir.len == 0) {
        const from_env = env_socket_dir orelse "";
        call.socket_dir = if (from_env.len > 0) from_env else default_socket_dir;
    }
    return call;
}

/// What JavaScript would see as the same string: valid UTF-8 (commander gets argv decoded).
fn text(value: []const u8) bool {
    return std.unicode.utf8ValidateSlice(value);
}

fn operand(value: []const u8) bool {
    return value.len > 0 and value[0] != '-' and text(value);
}

/// An option's value: non-empty, not option-like (commander's reading of those is left to it).
fn value_ok(value: []const u8) bool {
    return value.len > 0 and value[0] != '-' and text(value);
}

fn long_option(call: *Call, args: []const []const u8, index: *usize) bool {
    const arg = args[index.*];
    if (std.mem.eql(u8, arg, "--no-exit-code")) {
        call.no_exit_code = true;
        return true;
    }
    const equals = std.mem.indexOfScalar(u8, arg, '=');
    const name = if (equals) |at| arg[0..at] else arg;
    var value: []const u8 = undefined;
    if (equals) |at| value = arg[at + 1 ..] else {
        if (index.* + 2 >= args.len) return false;
        index.* += 1;
        value = args[index.*];
    }
    if (std.mem.eql(u8, name, "--socket-dir")) return set_socket_dir(call, value);
    if (std.mem.eql(u8, name, "--prefix-data")) return set_prefix(call, value);
    return false;
}

fn short_option(call: *Call, args: []const []const u8, index: *usize) bool {
    const arg = args[index.*];
    const letter = arg[1];
    switch (letter) {
        't', 'T', 'E' => {
            if (arg.len != 2) return false;
            if (letter == 't') call.filter_stdout = true;
            if (letter == 'T') call.filter_stderr = true;
            if (letter == 'E') call.no_exit_code = true;
            return true;
        },
        'd', 'w', 'p' => {},
        else => return false,
    }
    var value: []const u8 = undefined;
    if (arg.len > 2) value = arg[2..] else {
        if (index.* + 2 >= args.len) return false;
        index.* += 1;
        value = args[index.*];
    }
    if (!value_ok(value)) return false;
    switch (letter) {
        'd' => call.target = value,
        'w' => return set_timeout(call, value),
        'p' => return set_prefix(call, value),
        else => unreachable,
    }
    return true;
}

fn set_socket_dir(call: *Call, value: []const u8) bool {
    if (!value_ok(value)) return false;
    call.socket_dir = value;
    return true;
}

fn set_prefix(call: *Call, value: []const u8) bool {
    // A second one is the CLI's usage error.
    if (call.prefix != null or !value_ok(value)) return false;
    call.prefix = value;
    return true;
}

fn set_timeout(call: *Call, value: []const u8) bool {
    for (value) |c| if (c < '0' or c > '9') return false;
    const seconds = std.fmt.parseInt(u32, value, 10) catch return false;
    if (seconds > timeout_s_max) return false;
    call.connect_timeout_ms = if (seconds == 0) -1 else @intCast(seconds * 1000);
    return true;
}

test "command line: the dom0 -> VM calls run natively" {
    const plain = parse(&.{ "-d", "vault", "DEFAULT:QUBESRPC test.Echo dom0" }, null).?;
    try std.testing.expectEqualStrings("vault", plain.target);
    try std.testing.expectEqualStrings("DEFAULT:QUBESRPC test.Echo dom0", plain.command);
    try std.testing.expectEqualStrings(default_socket_dir, plain.socket_dir);
    try std.testing.expectEqual(@as(i32, 10_000), plain.connect_timeout_ms);
    try std.testing.expect(plain.prefix == null and !plain.no_exit_code);
    const args = [_][]const u8{
        "--socket-dir=/run/x", "-t", "-T", "-E", "-w0", "-dvault", "--prefix-data", "ab", "user:ls",
    };
    const full = parse(&args, "/run/env").?;
    try std.testing.expectEqualStrings("/run/x", full.socket_dir);
    try std.testing.expect(full.filter_stdout and full.filter_stderr and full.no_exit_code);
    try std.testing.expectEqual(@as(i32, -1), full.connect_timeout_ms);
    try std.testing.expectEqualStrings("ab", full.prefix.?);
    try std.testing.expectEqualStrings("vault", full.target);
    const short = [_][]const u8{ "-d", "work", "-w", "3", "-p", "x", "--no-exit-code", "u:c" };
    const from_env = parse(&short, "/e").?;
    try std.testing.expectEqualStrings("/e", from_env.socket_dir);
    try std.testing.expectEqual(@as(i32, 3000), from_env.connect_timeout_ms);
    try std.testing.expect(from_env.no_exit_code);
    // The last -d wins, as with commander.
    try std.testing.expectEqualStrings("b", parse(&.{ "-d", "a", "-d", "b", "u:c" }, "").?.target);
}

test "command line: everything else is the Bun CLI's" {
    const cases = [_][]const []const u8{
        &.{},
        &.{"user:ls"},
        &.{ "-d", "vault" },
        &.{ "-d", "dom0", "DEFAULT:QUBESRPC test.Echo dom0 name dom0" },
        &.{ "-d", "@adminvm", "DEFAULT:QUBESRPC a dom0 name dom0" },
        &.{ "-d", "vault", "-l", "cat", "user:ls" },
        &.{ "-d", "vault", "-e", "user:ls" },
        &.{ "-d", "vault", "-c", "a,work,2", "user:ls" },
        &.{ "-d", "vault", "-k", "user:ls" },
        &.{ "-d", "vault", "-W", "user:ls" },
        &.{ "-d", "vault", "--use-stdin-socket", "user:ls" },
        &.{ "-d", "vault", "-tT", "user:ls" },
        &.{ "-d", "vault", "-h", "user:ls" },
        &.{ "-d", "vault", "--help" },
        &.{ "-d", "vault", "-w", "1x", "user:ls" },
        &.{ "-d", "vault", "-w", "99999999", "user:ls" },
        &.{ "-d", "vault", "-p", "a", "-p", "b", "user:ls" },
        &.{ "-d", "vault", "--", "user:ls" },
        &.{ "-d", "vault", "user:ls", "extra" },
        &.{ "user:ls", "-d", "vault" },
        &.{ "-d", "", "user:ls" },
        &.{ "-d", "a/b", "user:ls" },
        &.{ "-d", "-t", "user:ls" },
        &.{ "-d", "vault", "--socket-dir=", "user:ls" },
        &.{ "-d", "vault", "-p", "\xff", "user:ls" },
        &.{ "-d", "vault", "user:\xff" },
        &.{ "-d", "vault", "-" },
        &.{ "-d", "vault", "-d" },
    };
    for (cases) |case| try std.testing.expect(parse(case, null) == null);
}

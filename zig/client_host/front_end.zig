//! `qrexec-client-vm`'s native front end (zig-out/bin/qrexec-client-vm, what bin/qrexec-client-vm
//! runs when it is built). Starting Bun costs about a whole call's latency budget, so this small
//! static program hands its arguments, environment and fds 0-2 to the agent's client host
//! (wire.zig), which runs the call with the CLI's own TypeScript, and exits with the status it is
//! given. It knows nothing of qrexec: whenever the agent cannot be reached or declines, it execs
//! the Bun CLI (src/cli/qrexec-client-vm.ts) with the same arguments, before any input was read.
const std = @import("std");
const linux = std.os.linux;
const assert = std.debug.assert;
const wire = @import("wire.zig");
const local_program = @import("local_program.zig");
const sys = @import("../sys.zig");
const bun_cli = @import("bun_cli.zig");
const getenv = bun_cli.getenv;
const write_stderr = bun_cli.write_stderr;

const program = "qrexec-client-vm";

const default_agent_socket = "/var/run/qubes/qrexec-agent";
const sun_path_bytes = 108;

/// The socket SIGUSR1 is forwarded on, once the request is out (before, the byte would land in
/// the middle of it); `signal_pending` keeps a signal that came earlier.
var signal_socket = std.atomic.Value(i32).init(-1);
var signal_pending = std.atomic.Value(bool).init(false);

pub fn main() noreturn {
    const args = std.os.argv[1..];
    bun_cli.refuse_closed_stdio(program);
    if (std.mem.eql(u8, getenv("QRX_CLIENT_VM_HOST") orelse "", "off")) fallback(args);
    var path: [sun_path_bytes]u8 = undefined;
    const agent = agent_socket_option(args) orelse getenv("QRX_AGENT_SOCKET");
    const path_len = socket_path(&path, agent) orelse fallback(args);
    const socket = connect(path[0..path_len]) orelse fallback(args);
    forward_sigusr1();
    send_request(socket, args) catch {
        _ = linux.close(socket);
        fallback(args);
    };
    signal_socket.store(socket, .seq_cst);
    if (signal_pending.load(.seq_cst)) send_signal_byte(socket);
    var local: ?local_program.Started = null;
    var replied = false;
    while (true) {
        if (local) |*started| {
            if (!wait_for_reply_or_exit(socket, started)) {
                local = null;
                continue;
            }
        }
        const reply = read_reply(socket) orelse if (replied) lost_agent() else not_taken();
        replied = true;
        switch (reply.kind) {
            .exit => linux.exit_group(exit_status(reply.value)),
            .fallback => {
                _ = linux.close(socket);
                fallback(args);
            },
            .refused => refused(reply.value),
            .accepted => close_stdin_stdout(),
            .start_local => local = start_local(socket, args, reply.value),
            .message => write_message(socket, reply.value),
            .sync => send_local_value(socket, .synced, 0),
        }
    }
}

var message_buffer: [wire.message_bytes_max]u8 = undefined;

/// The agent's words about the call, to our stderr, which the call's stream holds for it.
fn write_message(socket: i32, length: i32) void {
    if (length < 1 or length > wire.message_bytes_max) lost_agent();
    const text = message_buffer[0..@intCast(length)];
    if (sys.read_full(socket, text) != text.len) lost_agent();
    write_stderr(text);
}

/// The agent holds our stdin and stdout now, or our local program does: our copies would keep
/// a reader of our output from seeing EOF until we exit.
fn close_stdin_stdout() void {
    _ = linux.close(0);
    _ = linux.close(1);
}

/// The local program named by our arguments from `first` on (the agent's parser found it
/// there), started, and the agent told how that went; null when it could not be started.
fn start_local(socket: i32, args: []const [*:0]const u8, first: i32) ?local_program.Started {
    if (first < 0 or first >= args.len) lost_agent();
    switch (local_program.start(args[@intCast(first)..])) {
        .failed => |errno| {
            send_local_value(socket, .failed, errno);
            return null;
        },
        .started => |started| {
            var control: sys.CmsgBuffer(wire.local_fds) = .{};
            control.set_fds(.{ started.stdin_fd, started.stdout_fd });
            var record: [wire.local_record_bytes_max]u8 = undefined;
            record[0] = @intFromEnum(wire.LocalTag.started);
            std.mem.writeInt(i32, record[1..5], started.pid, .little);
            // One send: the agent takes the fds only with the whole record (five bytes, which a
            // unix stream socket does not split).
            while (true) {
                const rc = sys.send_one(socket, &record, &control.bytes, linux.MSG.NOSIGNAL);
                if (linux.E.init(rc) != .INTR) break;
            }
            _ = linux.close(started.stdin_fd);
            _ = linux.close(started.stdout_fd);
            close_stdin_stdout();
            return started;
        },
    }
}

fn send_local_value(socket: i32, tag: wire.LocalTag, value: i32) void {
    var record: [wire.local_record_bytes_max]u8 = undefined;
    record[0] = @intFromEnum(tag);
    std.mem.writeInt(i32, record[1..5], value, .little);
    // An agent that cannot hear this is gone: the next read of the socket says so.
    write_all(socket, &record) catch {};
}

/// Waits until the agent says something (true) or the local program ends, whose status then
/// goes to the agent (false). Without a pidfd, the program is polled for every 20 ms.
fn wait_for_reply_or_exit(socket: i32, started: *const local_program.Started) bool {
    var fds = [_]linux.pollfd{
        .{ .fd = socket, .events = linux.POLL.IN, .revents = 0 },
        .{ .fd = started.pidfd, .events = linux.POLL.IN, .revents = 0 },
    };
    while (true) {
        const count: usize = if (started.pidfd >= 0) 2 else 1;
        const timeout: i32 = if (started.pidfd >= 0) -1 else 20;
        const rc = linux.poll(&fds, count, timeout);
        if (linux.E.init(rc) == .INTR) continue;
        if (linux.E.init(rc) != .SUCCESS) lost_agent();
        if (fds[0].revents != 0) return true;
        if (local_program.poll_exit(started)) |status| {
            if (started.pidfd >= 0) _ = linux.close(started.pidfd);
            send_local_value(socket, .exited, status);
            return false;
        }
    }
}

/// The options that take a value, as the CLI's fast parser knows them (`VALUED` in
/// src/client-vm/command-line.ts); only they can hide an operand-looking word.
const valued_options = [_][]const u8{
    "--buffer-size", "--peer-profile", "-a", "--agent-socket",
    "-p",            "--prefix-data",  "-s", "--source-qube",
};

/// The agent socket the command line names (`-a PATH`, `-aPATH`, `--agent-socket PATH`,
/// `--agent-socket=PATH`, the last one winning), read the way the CLI's fast parser reads it:
/// options up to the first operand. Null when none is given. For a command line that parser
/// refuses, the answer does not matter: the agent tells us to fall back whatever it is.
fn agent_socket_option(args: []const [*:0]const u8) ?[]const u8 {
    var found: ?[]const u8 = null;
    var index: usize = 0;
    while (index < args.len) : (index += 1) {
        const arg = std.mem.span(args[index]);
        if (arg.len < 2 or arg[0] != '-') break;
        const long = arg[1] == '-';
        const equals = if (long) std.mem.indexOfScalar(u8, arg, '=') else null;
        const name = if (equals) |at| arg[0..at] else if (long) arg else arg[0..2];
        const short_attached = !long and arg.len > 2;
        var value: ?[]const u8 = null;
        if (equals) |at| value = arg[at + 1 ..] else if (short_attached) value = arg[2..];
        if (!is_valued_option(name)) continue;
        if (value == null) {
            index += 1;
            if (index == args.len) break;
            value = std.mem.span(args[index]);
        }
        if (std.mem.eql(u8, name, "-a") or std.mem.eql(u8, name, "--agent-socket")) found = value;
    }
    return found;
}

fn is_valued_option(name: []const u8) bool {
    for (valued_options) |option| if (std.mem.eql(u8, option, name)) return true;
    return false;
}

/// `<agent socket>.clients` into `out` (with its NUL); null when it does not fit sun_path.
fn socket_path(out: *[sun_path_bytes]u8, agent_socket: ?[]const u8) ?usize {
    const given = agent_socket orelse "";
    const base = if (given.len == 0) default_agent_socket else given;
    const len = base.len + wire.socket_suffix.len;
    if (len + 1 > out.len or std.mem.indexOfScalar(u8, base, 0) != null) return null;
    @memcpy(out[0..base.len], base);
    @memcpy(out[base.len..len], wire.socket_suffix);
    out[len] = 0;
    return len;
}

fn connect(path: []const u8) ?i32 {
    const rc = linux.socket(linux.AF.UNIX, linux.SOCK.STREAM | linux.SOCK.CLOEXEC, 0);
    if (linux.E.init(rc) != .SUCCESS) return null;
    const socket: i32 = @intCast(rc);
    var address = linux.sockaddr.un{ .family = linux.AF.UNIX, .path = [_]u8{0} ** sun_path_bytes };
    @memcpy(address.path[0..path.len], path);
    while (true) {
        switch (linux.E.init(linux.connect(socket, &address, @sizeOf(linux.sockaddr.un)))) {
            .SUCCESS => return socket,
            .INTR => continue,
            else => {
                _ = linux.close(socket);
                return null;
            },
        }
    }
}

fn on_sigusr1(_: i32) callconv(.c) void {
    const socket = signal_socket.load(.seq_cst);
    if (socket < 0) signal_pending.store(true, .seq_cst) else send_signal_byte(socket);
}

fn send_signal_byte(socket: i32) void {
    const byte = [_]u8{wire.signal_byte};
    _ = linux.sendto(socket, &byte, 1, linux.MSG.NOSIGNAL, null, 0);
}

fn forward_sigusr1() void {
    const action = linux.Sigaction{
        .handler = .{ .handler = on_sigusr1 },
        .mask = linux.empty_sigset,
        .flags = linux.SA.RESTART,
    };
    _ = linux.sigaction(linux.SIG.USR1, &action, null);
}

fn restore_sigusr1() void {
    const action = linux.Sigaction{
        .handler = .{ .handler = linux.SIG.DFL },
        .mask = linux.empty_sigset,
        .flags = 0,
    };
    _ = linux.sigaction(linux.SIG.USR1, &action, null);
}

/// The payload: `args`, then the environment, each NUL-terminated. Null when it does not fit.
fn encode_payload(out: []u8, args: []const [*:0]const u8, env: []const [*:0]const u8) ?usize {
    var len: usize = 0;
    for ([_][]const [*:0]const u8{ args, env }) |strings| {
        for (strings) |string| {
            const text = std.mem.span(string);
            if (len + text.len + 1 > out.len) return null;
            @memcpy(out[len..][0..text.len], text);
            out[len + text.len] = 0;
            len += text.len + 1;
        }
    }
    return len;
}

var payload_buffer: [wire.payload_bytes_max]u8 = undefined;

fn send_request(socket: i32, args: []const [*:0]const u8) error{ TooLarge, Send }!void {
    const env: []const [*:0]const u8 = @ptrCast(std.os.environ);
    const payload_len = encode_payload(&payload_buffer, args, env) orelse return error.TooLarge;
    const header = wire.RequestHeader{
        .magic = wire.magic,
        .version = wire.version,
        .argc = @intCast(args.len),
        .envc = @intCast(env.len),
        .payload_bytes = @intCast(payload_len),
    };
    var control: sys.CmsgBuffer(wire.passed_fds) = .{};
    control.set_fds(.{ 0, 1, 2 });
    const bytes = std.mem.asBytes(&header);
    var sent: usize = 0;
    while (true) {
        const rc = sys.send_one(socket, bytes, &control.bytes, linux.MSG.NOSIGNAL);
        switch (linux.E.init(rc)) {
            .SUCCESS => {
                sent = rc;
                break;
            },
            .INTR => continue,
            else => return error.Send,
        }
    }
    // The fds went with the first byte; the rest of the header, if any, goes plainly.
    try write_all(socket, bytes[sent..]);
    try write_all(socket, payload_buffer[0..payload_len]);
}

fn write_all(socket: i32, data: []const u8) error{Send}!void {
    var done: usize = 0;
    while (done < data.len) {
        const rc = linux.sendto(
            socket,
            data[done..].ptr,
            data.len - done,
            linux.MSG.NOSIGNAL,
            null,
            0,
        );
        switch (linux.E.init(rc)) {
            .SUCCESS => done += rc,
            .INTR => {},
            else => return error.Send,
        }
    }
}

const Reply = struct { kind: wire.ReplyKind, value: i32 };

/// The next reply, or null at EOF, on an error or an unknown kind.
fn read_reply(socket: i32) ?Reply {
    var raw: wire.Reply = undefined;
    const bytes = std.mem.asBytes(&raw);
    if (sys.read_full(socket, bytes) != bytes.len) return null;
    return decode_reply(raw);
}

fn decode_reply(raw: wire.Reply) ?Reply {
    const kind = std.meta.intToEnum(wire.ReplyKind, raw.kind) catch return null;
    return .{ .kind = kind, .value = raw.value };
}

fn exit_status(value: i32) u8 {
    return if (value >= 0 and value <= 255) @intCast(value) else 255;
}

/// The agent went away before its first reply: as upstream's client whose trigger socket ends
/// before the connect parameters (qrexec-protocol.md §2.1 step 9), a refusal.
fn not_taken() noreturn {
    write_stderr("Request refused\n");
    linux.exit_group(126);
}

fn lost_agent() noreturn {
    // 255, as for a vchan that closed before an exit code (§8): the agent held the call's vchan.
    write_stderr("qrexec-client-vm: lost the qrexec agent during the call\n");
    linux.exit_group(255);
}

/// The agent could not take the call (its fds never reached it): 126, as a refused request.
/// The listener sends this only for EMFILE and ENFILE.
fn refused(errno: i32) noreturn {
    const nfile = errno == @intFromEnum(linux.E.NFILE);
    write_stderr("Request refused: the qrexec agent is out of file descriptors ");
    write_stderr(if (nfile) "(ENFILE)\n" else "(EMFILE)\n");
    linux.exit_group(126);
}

/// Runs the Bun CLI with our arguments; never returns.
fn fallback(args: []const [*:0]const u8) noreturn {
    restore_sigusr1();
    bun_cli.exec(program, args);
}

test "front end: the client-host socket path" {
    var out: [sun_path_bytes]u8 = undefined;
    const len = socket_path(&out, "/run/lab/agent-work").?;
    try std.testing.expectEqualStrings("/run/lab/agent-work.clients", out[0..len]);
    try std.testing.expectEqual(@as(u8, 0), out[len]);
    const default_len = socket_path(&out, null).?;
    try std.testing.expectEqualStrings(default_agent_socket ++ ".clients", out[0..default_len]);
    try std.testing.expectEqual(default_len, socket_path(&out, "").?);
    // 99 + 8 = 107 bytes plus the NUL fits; one more does not.
    try std.testing.expect(socket_path(&out, "/" ++ "a" ** 98) != null);
    try std.testing.expect(socket_path(&out, "/" ++ "a" ** 99) == null);
}

test "front end: the agent socket from the command line, as the CLI's fast parser reads it" {
    const Case = struct { args: []const [*:0]const u8, expected: ?[]const u8 };
    const cases = [_]Case{
        .{ .args = &.{ "vault", "test.Echo" }, .expected = null },
        .{ .args = &.{ "--agent-socket=/run/a", "vault", "test.Echo" }, .expected = "/run/a" },
        .{ .args = &.{ "--agent-socket", "/run/b", "vault", "test.Echo" }, .expected = "/run/b" },
        .{ .args = &.{ "-a", "/run/c", "vault", "test.Echo" }, .expected = "/run/c" },
        .{ .args = &.{ "-a/run/d", "vault", "test.Echo" }, .expected = "/run/d" },
        // The last one wins; values of other options are skipped, flags are not values.
        .{
            .args = &.{ "-a", "/run/e", "-t", "--prefix-data", "vault", "-a/run/f", "vault", "s" },
            .expected = "/run/f",
        },
        .{ .args = &.{ "-p", "-a", "vault", "test.Echo" }, .expected = null },
        // Operands end the options: an -a after TARGET belongs to the local program.
        .{ .args = &.{ "vault", "test.Echo", "prog", "-a", "/run/g" }, .expected = null },
        .{ .args = &.{ "-", "-a", "/run/h" }, .expected = null },
        .{ .args = &.{"-a"}, .expected = null },
    };
    for (cases) |case| {
        const got = agent_socket_option(case.args);
        if (case.expected) |expected| {
            try std.testing.expectEqualStrings(expected, got.?);
        } else try std.testing.expect(got == null);
    }
}

test "front end: payload encoding and its limit" {
    var out: [32]u8 = undefined;
    const args = [_][*:0]const u8{ "vault", "", "test.Echo" };
    const env = [_][*:0]const u8{"A=1"};
    const len = encode_payload(&out, &args, &env).?;
    try std.testing.expectEqualStrings("vault\x00\x00test.Echo\x00A=1\x00", out[0..len]);
    try std.testing.expectEqual(@as(usize, 0), encode_payload(&out, &.{}, &.{}).?);
    var small: [10]u8 = undefined;
    try std.testing.expect(encode_payload(&small, &args, &env) == null);
}

test "front end: replies and exit statuses" {
    try std.testing.expectEqual(
        wire.ReplyKind.accepted,
        decode_reply(.{ .kind = 3, .value = 0 }).?.kind,
    );
    try std.testing.expect(decode_reply(.{ .kind = 9, .value = 0 }) == null);
    try std.testing.expectEqual(@as(u8, 137), exit_status(137));
    try std.testing.expectEqual(@as(u8, 255), exit_status(-1));
    try std.testing.expectEqual(@as(u8, 255), exit_status(256));
}

//! `qrexec-client`'s native program (zig-out/bin/qrexec-client, what bin/qrexec-client runs when
//! it is built) for the common call, dom0 -> VM (§2.3): it does what src/client/client.ts's
//! `runVmCommand` does, with the same pump, in a process that starts in about a millisecond
//! instead of Bun's tens. The data moves in this process, as with the Bun CLI, so whatever is
//! done to the client (SIGSTOP, SIGTERM, waiting for its pid) is done to the call. Any other
//! command line, environment or failure before the daemon was asked runs the Bun CLI
//! (src/cli/qrexec-client.ts) with the same arguments, which then says what is wrong.
const std = @import("std");
const linux = std.os.linux;

const bun_cli = @import("../client_host/bun_cli.zig");
const command_line = @import("command_line.zig");
const daemon = @import("daemon.zig");
const settings_mod = @import("settings.zig");
const caller = @import("caller.zig");
const net = @import("../net.zig");

const program = "qrexec-client";
const exit_problem: u8 = 125;
const args_max = 64;

pub fn main() noreturn {
    const argv = std.os.argv[1..];
    bun_cli.refuse_closed_stdio(program);
    var strings: [args_max][]const u8 = undefined;
    if (argv.len > args_max) fallback(argv);
    for (argv, 0..) |arg, i| strings[i] = std.mem.span(arg);
    if (!settings_mod.native_allowed()) fallback(argv);
    const call = command_line.parse(strings[0..argv.len], bun_cli.getenv("QRX_SOCKET_DIR")) orelse
        fallback(argv);
    const settings = settings_mod.from_environment() orelse fallback(argv);
    var path_buffer: [std.fs.max_path_bytes]u8 = undefined;
    const path = settings_mod.daemon_socket_path(&path_buffer, call.socket_dir, call.target) orelse
        fallback(argv);
    const socket = net.connect_unix(path) catch fallback(argv);
    daemon.handshake(socket) catch {
        _ = linux.close(socket);
        fallback(argv);
    };
    var failure = daemon.Failure{};
    const allocated = daemon.request_exec(socket, call.command, &failure) catch
        fail(&.{ "the daemon of ", call.target, " refused the command: ", failure.text() });
    // The daemon connection stays open for the call, as the Bun CLI's does.
    const outcome = caller.run(call, allocated, settings);
    _ = linux.close(socket);
    switch (outcome) {
        .remote => |status| {
            if (call.no_exit_code) linux.exit_group(0);
            // The VM's side went away without its status (its agent or the VM died, §6.9).
            if (status == null) {
                say(&.{ "vchan connection closed early: ", call.target, " sent no exit status" });
            }
            linux.exit_group(exit_code(status));
        },
        .failed => |message| fail(&.{message}),
    }
}

/// The remote status taken modulo 256, as `clientExitCode` (src/protocol/exit.ts) without a
/// local program; null (no EXIT_CODE came) is upstream's -1, so 255.
fn exit_code(remote: ?i32) u8 {
    const status: i32 = remote orelse -1;
    return @truncate(@as(u32, @bitCast(status)));
}

fn fail(parts: []const []const u8) noreturn {
    say(parts);
    linux.exit_group(exit_problem);
}

fn say(parts: []const []const u8) void {
    bun_cli.write_stderr(program ++ ": ");
    for (parts) |part| bun_cli.write_stderr(part);
    bun_cli.write_stderr("\n");
}

fn fallback(argv: []const [*:0]const u8) noreturn {
    bun_cli.exec(program, argv);
}

test "native qrexec-client: exit codes" {
    try std.testing.expectEqual(@as(u8, 0), exit_code(0));
    try std.testing.expectEqual(@as(u8, 255), exit_code(null));
    try std.testing.expectEqual(@as(u8, 255), exit_code(-1));
    try std.testing.expectEqual(@as(u8, 1), exit_code(257));
    try std.testing.expectEqual(@as(u8, 137), exit_code(137));
    _ = @import("command_line.zig");
    _ = @import("daemon.zig");
    _ = @import("settings.zig");
}

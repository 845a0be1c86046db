//! `qfile-agent`, natively (zig-out/bin/qfile-agent, what bin/qfile-agent runs when it is
//! built): src/cli/qfile-agent.ts without Bun's start, since the sender's work is all in
//! zig/filecopy/pack.zig already. The same arguments, messages and exit statuses, and the
//! GUI progress (PROGRESS_TYPE=gui: byte counts to SAVED_FD_1). The console progress bar
//! (PROGRESS_TYPE=console) and any text that is not UTF-8 run the Bun program instead.
const std = @import("std");
const linux = std.os.linux;

const bun_cli = @import("../../client_host/bun_cli.zig");
const diag = @import("../../diag.zig");
const pack = @import("../pack.zig");
const messages = @import("messages.zig");

const program = "qfile-agent";
const usage = "usage: " ++ program ++ " [--ignore-symlinks] [--] PATH...";
const gui_interval_ns = 100 * std.time.ns_per_ms;
const status_cancelled: u8 = 32;

var gui_fd: i32 = -1;
var gui_last_ns: u64 = 0;

pub fn main() noreturn {
    const argv = std.os.argv[1..];
    if (std.mem.eql(u8, bun_cli.getenv("PROGRESS_TYPE") orelse "", "console")) fallback(argv);
    for (argv) |arg| if (!std.unicode.utf8ValidateSlice(std.mem.span(arg))) fallback(argv);
    var ignore_symlinks = false;
    var index: usize = 0;
    while (index < argv.len) : (index += 1) {
        const arg = std.mem.span(argv[index]);
        if (std.mem.eql(u8, arg, "--")) {
            index += 1;
            break;
        }
        if (std.mem.eql(u8, arg, "--ignore-symlinks")) {
            ignore_symlinks = true;
        } else if (is_help(arg)) {
            fallback(argv);
        } else if (arg.len > 1 and arg[0] == '-') {
            usage_error(&.{ "unknown option ", arg });
        } else break;
    }
    const paths = argv[index..];
    if (paths.len == 0) usage_error(&.{"no file to send"});
    for (paths) |path| if (std.mem.len(path) == 0) usage_error(&.{"an empty file name was given"});
    gui_fd = gui_fd_of();
    // As the Bun program's clock, which starts with the process: nothing before 100 ms.
    gui_last_ns = now_ns();
    run(paths, ignore_symlinks);
}

fn run(paths: []const [*:0]const u8, ignore_symlinks: bool) noreturn {
    const list = path_list(paths);
    var result: pack.Result = std.mem.zeroes(pack.Result);
    const progress: ?pack.Progress = if (gui_fd >= 0) on_progress else null;
    const flags = pack.Flags{ .ignore_symlinks = ignore_symlinks };
    const rc = pack.pack(1, 0, list, flags, progress, &result);
    if (rc == 0) {
        // The copy is done: a progress window that went away does not make it fail.
        if (gui_fd >= 0) write_gui(result.bytes) catch {};
        linux.exit_group(0);
    }
    if (rc > 0) {
        var buffer: [512]u8 = undefined;
        const name = result.last_name[0..result.last_name_len];
        const last_name = if (result.has_last_name != 0) name else null;
        fatal(messages.remote_error(&buffer, result.remote_code, last_name), result.remote_code);
    }
    const errno: u32 = @intCast(-rc);
    switch (@as(linux.E, @enumFromInt(errno))) {
        // errno is still the remote code (0) when upstream reports this.
        .BADMSG => fatal("File transfer failed: checksum mismatch", 0),
        .PIPE => fatal("the receiving side closed without a result (EOF instead of result)", errno),
        else => {
            const message = diag.message();
            fatal(if (message.len > 0) message else "local error", errno);
        },
    }
}

/// The list pack reads: each path followed by its NUL.
fn path_list(paths: []const [*:0]const u8) []const u8 {
    var total: usize = 0;
    for (paths) |path| total += std.mem.len(path) + 1;
    const list = std.heap.page_allocator.alloc(u8, total) catch {
        fatal("cannot allocate the list of paths", @intFromEnum(linux.E.NOMEM));
    };
    var offset: usize = 0;
    for (paths) |path| {
        const text = std.mem.span(path);
        @memcpy(list[offset..][0..text.len], text);
        list[offset + text.len] = 0;
        offset += text.len + 1;
    }
    std.debug.assert(offset == total);
    return list;
}

fn gui_fd_of() i32 {
    if (!std.mem.eql(u8, bun_cli.getenv("PROGRESS_TYPE") orelse "", "gui")) return -1;
    const text = bun_cli.getenv("SAVED_FD_1") orelse return -1;
    if (text.len == 0) return -1;
    for (text) |c| if (c < '0' or c > '9') return -1;
    return std.fmt.parseInt(i32, text, 10) catch -1;
}

fn on_progress(bytes: u64, _: u64) callconv(.C) void {
    const now = now_ns();
    if (now - gui_last_ns < gui_interval_ns) return;
    gui_last_ns = now;
    // The GUI's reader went away: upstream's "cancelled" status.
    write_gui(bytes) catch linux.exit_group(status_cancelled);
}

fn now_ns() u64 {
    var ts: linux.timespec = undefined;
    _ = linux.clock_gettime(.MONOTONIC, &ts);
    return @as(u64, @intCast(ts.sec)) * std.time.ns_per_s + @as(u64, @intCast(ts.nsec));
}

fn write_gui(bytes: u64) error{Failed}!void {
    var buffer: [24]u8 = undefined;
    const line = std.fmt.bufPrint(&buffer, "{d}\n", .{bytes}) catch unreachable;
    var done: usize = 0;
    while (done < line.len) {
        const rc = linux.write(gui_fd, line[done..].ptr, line.len - done);
        switch (linux.E.init(rc)) {
            .SUCCESS => done += rc,
            .INTR => {},
            else => return error.Failed,
        }
    }
}

fn fatal(message: []const u8, code: u32) noreturn {
    messages.write_fatal(program, message, code);
    linux.exit_group(1);
}

fn usage_error(parts: []const []const u8) noreturn {
    messages.write_stderr(program ++ ": ");
    for (parts) |part| messages.write_stderr(part);
    messages.write_stderr("\n" ++ usage ++ "\n");
    linux.exit_group(1);
}

/// The help text is the Bun program's alone.
fn is_help(arg: []const u8) bool {
    return std.mem.eql(u8, arg, "-h") or std.mem.eql(u8, arg, "--help");
}

fn fallback(argv: []const [*:0]const u8) noreturn {
    bun_cli.exec_with_separator(program, argv);
}

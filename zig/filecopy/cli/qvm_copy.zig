//! `qvm-copy` and `qvm-copy-to-vm`, natively (zig-out/bin/qvm-copy; bin/'s launchers set
//! QRX_PROGRAM_NAME): src/cli/qvm-copy.ts without Bun's start. The same options, usage,
//! pre-flight and messages, then the same command,
//!   qrexec-client-vm --filter-escape-chars-stderr -- TARGET SERVICE qfile-agent [...] -- SOURCES
//! whose status is ours. The moves (qvm-move*), a name or text that is not UTF-8 and a
//! pre-flight problem described in Node's words run the Bun program instead.
const std = @import("std");
const linux = std.os.linux;

const bun_cli = @import("../../client_host/bun_cli.zig");
const messages = @import("messages.zig");
const tree_check = @import("tree_check.zig");

const sources_max = 4096;

const Options = struct {
    name: []const u8,
    to_vm: bool,
    progress: enum { auto, on, off } = .auto,
    ignore_symlinks: bool = false,
    /// Index of the first positional argument.
    first: usize = 0,
};

pub fn main() noreturn {
    const argv = std.os.argv[1..];
    const name = bun_cli.getenv("QRX_PROGRAM_NAME") orelse "qvm-copy";
    const moves = std.mem.startsWith(u8, name, "qvm-move");
    if (moves or !std.unicode.utf8ValidateSlice(name)) fallback(argv);
    for (argv) |arg| if (!std.unicode.utf8ValidateSlice(std.mem.span(arg))) fallback(argv);
    var options = Options{ .name = name, .to_vm = std.mem.endsWith(u8, name, "-to-vm") };
    parse(&options, argv);
    var positional = argv[options.first..];
    if (positional.len < @as(usize, if (options.to_vm) 2 else 1)) usage(&options, 1);
    if (positional.len > sources_max) fallback(argv);
    const target: []const u8 = if (options.to_vm) std.mem.span(positional[0]) else "@default";
    if (options.to_vm) positional = positional[1..];
    var sources: [sources_max][]const u8 = undefined;
    for (positional, 0..) |source, i| {
        sources[i] = tree_check.normalize_source(std.mem.span(source));
    }
    var check = tree_check.Check{ .ignore_symlinks = options.ignore_symlinks, .program = name };
    for (sources[0..positional.len]) |source| {
        tree_check.check_source(&check, source) catch fallback(argv);
    }
    if (options.to_vm) {
        const other = "qvm-copy";
        write_all(2, &.{ name, ": consider ", other, ", which lets dom0 choose the target\n" });
    }
    if (check.status() == .refused) {
        messages.write_stderr(check.text.items);
        linux.exit_group(1);
    }
    const all_names = check.status() == .needs_all_names;
    const service = if (all_names) "qubes.Filecopy+allow-all-names" else "qubes.Filecopy";
    const show = options.progress == .on or (options.progress == .auto and isatty(2));
    run(argv, target, service, sources[0..positional.len], &options, show, check.total_bytes);
}

fn parse(options: *Options, argv: []const [*:0]const u8) void {
    var index: usize = 0;
    while (index < argv.len) : (index += 1) {
        const arg = std.mem.span(argv[index]);
        if (std.mem.eql(u8, arg, "--")) {
            index += 1;
            break;
        }
        if (std.mem.eql(u8, arg, "--with-progress")) {
            options.progress = .on;
        } else if (std.mem.eql(u8, arg, "--without-progress")) {
            options.progress = .off;
        } else if (std.mem.eql(u8, arg, "--ignore-symlinks")) {
            options.ignore_symlinks = true;
        } else if (std.mem.eql(u8, arg, "--no-ignore-symlinks")) {
            options.ignore_symlinks = false;
        } else if (std.mem.eql(u8, arg, "-h") or std.mem.eql(u8, arg, "--help")) {
            usage(options, 0);
        } else if (arg.len > 1 and arg[0] == '-') {
            usage(options, 1);
        } else break;
    }
    options.first = index;
}

fn usage(options: *const Options, code: u8) noreturn {
    const name = options.name;
    const vm = options.to_vm;
    const parts = [_][]const u8{
        "usage: ",
        name,
        " [--with-progress|--without-progress] [--ignore-symlinks|--no-ignore-symlinks] [--] ",
        if (vm) "VM " else "",
        "FILE...\n\nCopy files to ",
        if (vm) "VM" else "a qube that dom0's policy picks or asks you for (target @default)",
        ".\nFiles arrive in ~/QubesIncoming/<this qube> of the target.\n\n",
        "  --with-progress       show progress (the default on a terminal): bytes, rate, ETA, " ++
            "then what was sent\n",
        "  --without-progress    print only errors\n",
        "  --ignore-symlinks     leave symbolic links out\n",
        "  --no-ignore-symlinks  copy symbolic links (the default; they must point inside what " ++
            "is copied)\n\nExamples:\n  ",
        name,
        if (vm) " vault report.pdf photos/\n  " else " report.pdf photos/\n  ",
        name,
        if (vm) " --without-progress vault big.iso\n" else " --without-progress big.iso\n",
    };
    write_all(if (code == 0) 1 else 2, &parts);
    linux.exit_group(code);
}

fn write_all(fd: i32, parts: []const []const u8) void {
    for (parts) |part| {
        var done: usize = 0;
        while (done < part.len) {
            const rc = linux.write(fd, part[done..].ptr, part.len - done);
            switch (linux.E.init(rc)) {
                .SUCCESS => done += rc,
                .INTR => {},
                else => break,
            }
        }
    }
}

fn isatty(fd: i32) bool {
    var size: std.posix.winsize = undefined;
    return linux.E.init(linux.ioctl(fd, linux.T.IOCGWINSZ, @intFromPtr(&size))) == .SUCCESS;
}

fn fallback(argv: []const [*:0]const u8) noreturn {
    bun_cli.exec_with_separator("qvm-copy", argv);
}

fn on_sigint(_: i32) callconv(.c) void {}

/// Runs qrexec-client-vm as the Bun program does and exits with its status.
fn run(
    argv: []const [*:0]const u8,
    target: []const u8,
    service: []const u8,
    sources: []const []const u8,
    options: *const Options,
    show_progress: bool,
    total_bytes: u64,
) noreturn {
    var command = Command{};
    command.build(target, service, sources, options.ignore_symlinks) catch fallback(argv);
    command.environment(show_progress, total_bytes) catch fallback(argv);
    // ^C reaches the whole process group; the status is what qrexec-client-vm reports.
    const action = linux.Sigaction{
        .handler = .{ .handler = on_sigint },
        .mask = linux.empty_sigset,
        .flags = linux.SA.RESTART,
    };
    _ = linux.sigaction(linux.SIG.INT, &action, null);
    const pid = linux.fork();
    if (linux.E.init(pid) != .SUCCESS) fallback(argv);
    if (pid == 0) {
        const rc = linux.execve(command.argv[0].?, @ptrCast(&command.argv), @ptrCast(&command.env));
        const why = @tagName(linux.E.init(rc));
        write_all(2, &.{ options.name, ": cannot run qrexec-client-vm: ", why, "\n" });
        linux.exit_group(127);
    }
    var status: u32 = 0;
    while (true) {
        const rc = linux.wait4(@intCast(pid), &status, 0, null);
        if (linux.E.init(rc) == .INTR) continue;
        break;
    }
    if (linux.W.IFEXITED(status)) linux.exit_group(linux.W.EXITSTATUS(status));
    const signal: u8 = @intCast(linux.W.TERMSIG(status));
    linux.exit_group(128 + @as(i32, signal));
}

/// The child's argv and environment, NUL-terminated arrays of C strings.
const Command = struct {
    argv: [sources_max + 16]?[*:0]const u8 = undefined,
    env: [4096]?[*:0]const u8 = undefined,
    paths: [2][std.fs.max_path_bytes]u8 = undefined,
    progress_type: [32]u8 = undefined,
    total: [48]u8 = undefined,
    strings: [2][256]u8 = undefined,

    fn build(
        self: *Command,
        target: []const u8,
        service: []const u8,
        sources: []const []const u8,
        ignore_symlinks: bool,
    ) error{Failed}!void {
        const root = bun_cli.repository_root(&self.paths[0]) orelse return error.Failed;
        const client = program_path(&self.paths[1], root, "qrexec-client-vm") orelse
            return error.Failed;
        const target_z = copy_z(&self.strings[0], target) orelse return error.Failed;
        const service_z = copy_z(&self.strings[1], service) orelse return error.Failed;
        var agent_buffer: [std.fs.max_path_bytes]u8 = undefined;
        const agent_text = program_path(&agent_buffer, root, "qfile-agent") orelse
            return error.Failed;
        // The root's buffer is reused for the agent's path from here on.
        const agent = copy_z(&self.paths[0], agent_text) orelse return error.Failed;
        var count: usize = 0;
        const fixed = [_][*:0]const u8{
            client, "--filter-escape-chars-stderr", "--", target_z, service_z, agent,
        };
        for (fixed) |arg| {
            self.argv[count] = arg;
            count += 1;
        }
        if (ignore_symlinks) {
            self.argv[count] = "--ignore-symlinks";
            count += 1;
        }
        self.argv[count] = "--";
        count += 1;
        // A normalised source is its argument with at most one byte less: argv's string, cut.
        for (sources) |source| {
            const z = @constCast(source.ptr);
            z[source.len] = 0;
            self.argv[count] = @ptrCast(z);
            count += 1;
        }
        self.argv[count] = null;
    }

    fn environment(self: *Command, show_progress: bool, total_bytes: u64) error{Failed}!void {
        var count: usize = 0;
        for (std.os.environ) |entry| {
            const text = std.mem.span(entry);
            if (std.mem.startsWith(u8, text, "PROGRESS_TYPE=")) continue;
            if (std.mem.startsWith(u8, text, "FILECOPY_TOTAL_BYTES=")) continue;
            if (count + 3 > self.env.len) return error.Failed;
            self.env[count] = entry;
            count += 1;
        }
        const kind = if (show_progress) "console" else "none";
        const progress = std.fmt.bufPrintZ(&self.progress_type, "PROGRESS_TYPE={s}", .{kind});
        self.env[count] = (progress catch return error.Failed).ptr;
        const total = std.fmt.bufPrintZ(&self.total, "FILECOPY_TOTAL_BYTES={d}", .{total_bytes});
        self.env[count + 1] = (total catch return error.Failed).ptr;
        self.env[count + 2] = null;
    }
};

/// `<root>/zig-out/bin/<name>`, built beside us, else its launcher `<root>/bin/<name>` (which
/// would only exec the same program, after a shell's start: ~1.5 ms each here).
fn program_path(buffer: []u8, root: []const u8, name: []const u8) ?[:0]const u8 {
    const native = std.fmt.bufPrintZ(buffer, "{s}/zig-out/bin/{s}", .{ root, name }) catch
        return null;
    if (linux.E.init(linux.access(native.ptr, linux.X_OK)) == .SUCCESS) return native;
    return std.fmt.bufPrintZ(buffer, "{s}/bin/{s}", .{ root, name }) catch null;
}

/// `text` with a NUL, in `buffer`; null when it does not fit.
fn copy_z(buffer: []u8, text: []const u8) ?[:0]const u8 {
    if (text.len + 1 > buffer.len) return null;
    @memcpy(buffer[0..text.len], text);
    buffer[text.len] = 0;
    return buffer[0..text.len :0];
}

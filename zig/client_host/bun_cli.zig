//! What the native client front ends share: the environment, upstream's closed-stdio check, and
//! the way out to the Bun program (through `<root>/bin/launch.sh`) for whatever they do not
//! handle themselves, exec'd with the same arguments before any input was read.
const std = @import("std");
const linux = std.os.linux;

pub fn getenv(name: []const u8) ?[]const u8 {
    for (std.os.environ) |entry| {
        const text = std.mem.span(entry);
        if (text.len <= name.len or text[name.len] != '=') continue;
        if (std.mem.eql(u8, text[0..name.len], name)) return text[name.len + 1 ..];
    }
    return null;
}

/// Upstream's check (spec §13.21): a closed fd 0, 1 or 2 ends the program with 125 before
/// anything could open a file under that number. It must be made natively: Bun reopens closed
/// fds 0-2 as /dev/null before any JavaScript runs, so the CLI cannot see them closed.
pub fn refuse_closed_stdio(program: []const u8) void {
    for ([_]u8{ 0, 1, 2 }) |fd| {
        if (linux.E.init(linux.fcntl(fd, linux.F.GETFD, 0)) == .SUCCESS) continue;
        write_stderr(program);
        write_stderr(": File descriptor ");
        write_stderr(&[_]u8{'0' + fd});
        write_stderr(" is closed, cannot continue\n");
        linux.exit_group(125);
    }
}

pub fn write_stderr(text: []const u8) void {
    _ = linux.write(2, text.ptr, text.len);
}

/// `<root>` of `<root>/zig-out/bin/<name>`, or null for any other layout.
pub fn root_of_executable(path: []const u8) ?[]const u8 {
    const bin = std.fs.path.dirname(path) orelse return null;
    if (!std.mem.eql(u8, std.fs.path.basename(bin), "bin")) return null;
    const out = std.fs.path.dirname(bin) orelse return null;
    if (!std.mem.eql(u8, std.fs.path.basename(out), "zig-out")) return null;
    return std.fs.path.dirname(out);
}

/// Runs the Bun program `program` (its bundle or src/cli/<program>.ts) with our arguments.
pub fn exec(program: []const u8, args: []const [*:0]const u8) noreturn {
    exec_bun(program, false, args);
}

/// The same with a `--` first, for Bun, which takes the first one after the script: the user's
/// own `--` then reaches the program (as bin/'s file-copy launchers do).
pub fn exec_with_separator(program: []const u8, args: []const [*:0]const u8) noreturn {
    exec_bun(program, true, args);
}

/// The repository this executable was built in (`<root>/zig-out/bin/<name>`), in `buffer`.
pub fn repository_root(buffer: *[std.fs.max_path_bytes]u8) ?[]const u8 {
    const rc = linux.readlink("/proc/self/exe", buffer, buffer.len);
    if (linux.E.init(rc) != .SUCCESS or rc >= buffer.len) return null;
    return root_of_executable(buffer[0..rc]);
}

fn exec_bun(program: []const u8, separator: bool, args: []const [*:0]const u8) noreturn {
    var exe: [std.fs.max_path_bytes]u8 = undefined;
    const root = repository_root(&exe) orelse cannot_run(program, "/proc/self/exe", .NOENT);
    var launcher_buffer: [std.fs.max_path_bytes]u8 = undefined;
    const launcher = std.fmt.bufPrintZ(&launcher_buffer, "{s}/bin/launch.sh", .{root}) catch
        cannot_run(program, root, .NAMETOOLONG);
    // Through bin/launch.sh, sourced with $program and $here set as by the launchers in bin/: it
    // runs the program's start-up bundle while that is fresh, else its sources (docs/
    // architecture.md, "Start-up").
    var script_buffer: [256]u8 = undefined;
    const script = std.fmt.bufPrintZ(
        &script_buffer,
        "program={s} here=${{0%/*}} && . \"$0\"",
        .{program},
    ) catch cannot_run(program, root, .NAMETOOLONG);
    const shell = "/bin/sh";
    var argv_buffer: [4096]?[*:0]const u8 = undefined;
    if (args.len + 6 > argv_buffer.len) cannot_run(program, shell, .@"2BIG");
    argv_buffer[0] = shell;
    argv_buffer[1] = "-c";
    argv_buffer[2] = script;
    argv_buffer[3] = launcher;
    const first: usize = if (separator) 5 else 4;
    if (separator) argv_buffer[4] = "--";
    for (args, 0..) |arg, i| argv_buffer[first + i] = arg;
    argv_buffer[first + args.len] = null;
    const envp: [*:null]const ?[*:0]const u8 = @ptrCast(std.os.environ.ptr);
    const errno = linux.E.init(linux.execve(shell, @ptrCast(&argv_buffer), envp));
    cannot_run(program, shell, errno);
}

fn cannot_run(program: []const u8, what: []const u8, errno: linux.E) noreturn {
    write_stderr(program);
    write_stderr(": cannot run ");
    write_stderr(what);
    write_stderr(": ");
    write_stderr(@tagName(errno));
    write_stderr("\n");
    linux.exit_group(1);
}

test "bun cli: the repository root from the executable's path" {
    const root = root_of_executable("/work/qrx/zig-out/bin/qrexec-client-vm").?;
    try std.testing.expectEqualStrings("/work/qrx", root);
    try std.testing.expect(root_of_executable("/usr/bin/qrexec-client-vm") == null);
    try std.testing.expect(root_of_executable("qrexec-client-vm") == null);
}

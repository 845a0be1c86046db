//! The local program of a hosted `qrexec-client-vm` call (`qrexec-client-vm TARGET SERVICE
//! PROGRAM [ARGS...]`), started by the front end itself when the agent says `start_local`: it is
//! then a child of the caller's process, in the caller's directory, session and process group,
//! as upstream's (qrexec-protocol.md §10 step 3). Its stdin and stdout are socketpairs whose
//! other ends go to the agent's pump; our stdin and stdout become its fds 3 and 4
//! (SAVED_FD_0/1), our stderr its 5 with PASS_LOCAL_STDERR (SAVED_FD_2), and QREXEC_AGENT_PID
//! names us, as src/client-vm/client-vm.ts does for the Bun CLI.
const std = @import("std");
const linux = std.os.linux;
const getenv = @import("bun_cli.zig").getenv;
const sys = @import("../sys.zig");

pub const Started = struct {
    pid: i32,
    /// -1 when the kernel has no pidfds: the caller then polls with `wait4`.
    pidfd: i32,
    /// Our ends of its stdin and stdout socketpairs, for the agent.
    stdin_fd: i32,
    stdout_fd: i32,
};

const replaced_names = [_][]const u8{
    "SAVED_FD_0", "SAVED_FD_1", "SAVED_FD_2", "QREXEC_AGENT_PID",
};
/// A fd number no standard layout uses, above which the child parks what it moves.
const parked_fd_min = 10;
/// Where a PATH search goes when there is no PATH (glibc's execvp default).
const default_path = "/bin:/usr/bin";

pub const Result = union(enum) {
    started: Started,
    /// The errno with which it could not be started.
    failed: i32,
};

fn failure(rc: usize) Result {
    return .{ .failed = @intCast(@intFromEnum(linux.E.init(rc))) };
}

const out_of_memory: Result = .{ .failed = @intFromEnum(linux.E.NOMEM) };

/// Starts `argv` (its first element the program, as named on our command line). The argv and
/// environment arrays are built before the fork, so that the child only moves fds and execs.
pub fn start(argv: []const [*:0]const u8) Result {
    std.debug.assert(argv.len > 0);
    const allocator = std.heap.page_allocator;
    const pass_stderr = (getenv("PASS_LOCAL_STDERR") orelse "").len > 0;
    const env = environment(allocator, pass_stderr) catch return out_of_memory;
    const child_argv = allocator.allocSentinel(?[*:0]const u8, argv.len, null) catch
        return out_of_memory;
    for (argv, 0..) |arg, i| child_argv[i] = arg;
    // As the Bun CLI's spawn: the program sees its own name without the directory.
    child_argv[0] = basename_z(argv[0]);

    var stdin_pair: [2]i32 = undefined;
    var stdout_pair: [2]i32 = undefined;
    var report: [2]i32 = undefined;
    const flags = linux.SOCK.STREAM | linux.SOCK.CLOEXEC;
    var rc = linux.socketpair(linux.AF.UNIX, flags, 0, &stdin_pair);
    if (linux.E.init(rc) != .SUCCESS) return failure(rc);
    rc = linux.socketpair(linux.AF.UNIX, flags, 0, &stdout_pair);
    if (linux.E.init(rc) != .SUCCESS) {
        close_all(&stdin_pair);
        return failure(rc);
    }
    rc = linux.pipe2(&report, .{ .CLOEXEC = true });
    if (linux.E.init(rc) != .SUCCESS) {
        close_all(&(stdin_pair ++ stdout_pair));
        return failure(rc);
    }
    const pid_rc = linux.fork();
    if (linux.E.init(pid_rc) != .SUCCESS) {
        close_all(&(stdin_pair ++ stdout_pair ++ report));
        return failure(pid_rc);
    }
    if (pid_rc == 0) {
        const layout = [_]i32{ stdin_pair[1], stdout_pair[1], 2, 0, 1, 2 };
        child(argv[0], child_argv, env, layout[0..if (pass_stderr) 6 else 5], report[1]);
    }
    const pid: i32 = @intCast(pid_rc);
    close_all(&.{ stdin_pair[1], stdout_pair[1], report[1] });
    // EOF: the exec closed the pipe. Four bytes: the child's errno, and it has exited.
    var errno: i32 = 0;
    const got = sys.read_full(report[0], std.mem.asBytes(&errno));
    close_all(&.{report[0]});
    if (got == @sizeOf(i32)) {
        reap(pid);
        close_all(&.{ stdin_pair[0], stdout_pair[0] });
        return .{ .failed = errno };
    }
    const opened = linux.pidfd_open(pid, 0);
    const pidfd: i32 = if (linux.E.init(opened) == .SUCCESS) @intCast(opened) else -1;
    return .{ .started = .{
        .pid = pid,
        .pidfd = pidfd,
        .stdin_fd = stdin_pair[0],
        .stdout_fd = stdout_pair[0],
    } };
}

/// Our environment without the names we set, then those: SAVED_FD_0/1 (and 2), QREXEC_AGENT_PID.
fn environment(allocator: std.mem.Allocator, pass_stderr: bool) ![:null]?[*:0]const u8 {
    const ours: []const [*:0]const u8 = @ptrCast(std.os.environ);
    const env = try allocator.allocSentinel(?[*:0]const u8, ours.len + 4, null);
    var count: usize = 0;
    for (ours) |entry| {
        if (is_replaced(std.mem.span(entry))) continue;
        env[count] = entry;
        count += 1;
    }
    env[count] = "SAVED_FD_0=3";
    env[count + 1] = "SAVED_FD_1=4";
    count += 2;
    if (pass_stderr) {
        env[count] = "SAVED_FD_2=5";
        count += 1;
    }
    const pid_text = try std.fmt.allocPrintZ(allocator, "QREXEC_AGENT_PID={d}", .{linux.getpid()});
    env[count] = pid_text.ptr;
    count += 1;
    env[count] = null;
    return env[0..count :null];
}

fn is_replaced(entry: []const u8) bool {
    for (replaced_names) |name| {
        if (entry.len > name.len and entry[name.len] == '=' and
            std.mem.eql(u8, entry[0..name.len], name)) return true;
    }
    return false;
}

fn basename_z(path: [*:0]const u8) [*:0]const u8 {
    const text = std.mem.span(path);
    const slash = std.mem.lastIndexOfScalar(u8, text, '/') orelse return path;
    return @ptrCast(text[slash + 1 ..].ptr);
}

/// In the child: `layout[i]` becomes fd i, then the exec; on failure the errno goes to `report`.
fn child(
    program: [*:0]const u8,
    argv: [:null]?[*:0]const u8,
    env: [:null]?[*:0]const u8,
    layout: []const i32,
    report: i32,
) noreturn {
    // Parked above every target first, so that no move overwrites a source still to be moved.
    var parked: [6]i32 = undefined;
    for (layout, 0..) |source, i| {
        const rc = linux.fcntl(source, linux.F.DUPFD, parked_fd_min);
        if (linux.E.init(rc) != .SUCCESS) child_failed(rc, report);
        parked[i] = @intCast(rc);
    }
    for (parked[0..layout.len], 0..) |source, target| {
        const rc = linux.dup2(source, @intCast(target));
        if (linux.E.init(rc) != .SUCCESS) child_failed(rc, report);
        _ = linux.close(source);
    }
    child_failed(exec_path(program, argv, env), report);
}

/// execve `program`, searched in PATH when it names no directory (as execvp: a directory that
/// refuses it with EACCES is remembered, in case none has it).
fn exec_path(
    program: [*:0]const u8,
    argv: [:null]?[*:0]const u8,
    env: [:null]?[*:0]const u8,
) usize {
    const name = std.mem.span(program);
    if (std.mem.indexOfScalar(u8, name, '/') != null) return linux.execve(program, argv, env);
    var denied: ?usize = null;
    var last: usize = @bitCast(-@as(isize, @intFromEnum(linux.E.NOENT)));
    var path_buffer: [std.fs.max_path_bytes]u8 = undefined;
    var directories = std.mem.splitScalar(u8, getenv("PATH") orelse default_path, ':');
    while (directories.next()) |directory| {
        const dir = if (directory.len == 0) "." else directory;
        const full = std.fmt.bufPrintZ(&path_buffer, "{s}/{s}", .{ dir, name }) catch continue;
        last = linux.execve(full.ptr, argv, env);
        if (linux.E.init(last) == .ACCES) denied = last;
    }
    return denied orelse last;
}

fn child_failed(rc: usize, report: i32) noreturn {
    const errno: i32 = @intCast(@intFromEnum(linux.E.init(rc)));
    _ = linux.write(report, std.mem.asBytes(&errno).ptr, @sizeOf(i32));
    linux.exit_group(127);
}

fn reap(pid: i32) void {
    var status: u32 = 0;
    while (linux.E.init(linux.wait4(pid, &status, 0, null)) == .INTR) {}
}

fn close_all(fds: []const i32) void {
    for (fds) |fd| _ = linux.close(fd);
}

/// The status of a child that ended, from waitid's siginfo: its code, or 128+N for signal N
/// (src/protocol/exit.ts waitStatus). Null if it has not ended.
pub fn status_of(info: *const linux.siginfo_t) ?i32 {
    const cld_exited = 1;
    const cld_killed = 2;
    const cld_dumped = 3;
    if (info.fields.common.first.piduid.pid == 0) return null;
    const status = info.fields.common.second.sigchld.status;
    return switch (info.code) {
        cld_exited => status & 0xff,
        cld_killed, cld_dumped => 128 + status,
        else => null,
    };
}

/// The status of `started` if it has ended (reaped then), else null.
pub fn poll_exit(started: *const Started) ?i32 {
    var info: linux.siginfo_t = undefined;
    info.fields.common.first.piduid.pid = 0;
    const flags = linux.W.EXITED | linux.W.NOHANG;
    const rc = if (started.pidfd >= 0)
        linux.waitid(.PIDFD, started.pidfd, &info, flags)
    else
        linux.waitid(.PID, started.pid, &info, flags);
    // Reaped elsewhere (it cannot be: it is our only child) would leave the call waiting.
    if (linux.E.init(rc) != .SUCCESS) return 255;
    return status_of(&info);
}

test "local program: the environment replaces what it sets" {
    try std.testing.expect(is_replaced("SAVED_FD_0=7"));
    try std.testing.expect(is_replaced("QREXEC_AGENT_PID="));
    try std.testing.expect(!is_replaced("SAVED_FD_0"));
    try std.testing.expect(!is_replaced("SAVED_FD_00=1"));
    const name = basename_z("/usr/lib/qubes/qfile-agent");
    try std.testing.expectEqualStrings("qfile-agent", std.mem.span(name));
    try std.testing.expectEqualStrings("cat", std.mem.span(basename_z("cat")));
}

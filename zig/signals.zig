//! SIGUSR1 with its sender's pid (spec §6.6). Upstream runs one data handler per call, so a
//! SIGUSR1 to $QREXEC_AGENT_PID can only mean "this call". Our agent serves every call in one
//! process, so the handler records who sent the signal, and the caller maps that pid to the call
//! whose service child is the sender or one of its ancestors.
const std = @import("std");
const linux = std.os.linux;
const diag = @import("diag.zig");
const sys = @import("sys.zig");

const Fail = diag.Fail;

/// The pipe's write end as the handler sees it. Set once, before the handler is installed, and
/// never changed after, so the handler needs no lock.
var write_end = std.atomic.Value(i32).init(-1);
var read_end: i32 = -1;
var install_lock: std.Thread.Mutex = .{};
/// Handlers between their first instruction and their record's write: a signal that is no
/// longer pending but whose record is not in the pipe yet (see `handlers_running`).
var in_flight = std.atomic.Value(u32).init(0);

/// Pids per record: the sender, its parent, 0-padded (room for a longer chain).
pub const chain_len = 8;
pub const Record = [chain_len]i32;

/// Runs on whichever thread the kernel picks (any that does not block SIGUSR1), at any point of
/// that thread's work: only raw syscalls here (open/read/close of /proc and one write), which
/// leave libc's errno alone. The sender's ancestors are read now, not later: a sender that exits
/// at once (`sh -c 'kill -USR1 ...'`) would otherwise be gone before anyone could map it to a
/// call. A full pipe drops the record: a flood of signals must not block the thread.
fn on_sigusr1(_: i32, info: *const std.posix.siginfo_t, _: ?*anyopaque) callconv(.c) void {
    _ = in_flight.fetchAdd(1, .seq_cst);
    defer _ = in_flight.fetchSub(1, .seq_cst);
    const descriptor = write_end.load(.acquire);
    if (descriptor < 0) return;
    const record = record_of(info.fields.common.first.piduid.pid);
    // 32 bytes, below PIPE_BUF: the write is atomic, so records never interleave.
    const bytes = std.mem.asBytes(&record);
    _ = linux.write(descriptor, bytes.ptr, bytes.len);
}

/// The record of a signal from `sender`. Only the parent is read here: each /proc read delays
/// the record, and a service that signals and exits at once races it (§6.6). Deeper senders are
/// walked later, while alive.
fn record_of(sender: i32) Record {
    var record: Record = @splat(0);
    record[0] = sender;
    if (sender > 1) record[1] = parent_of(sender) orelse 0;
    return record;
}

/// True while a handler runs: its record is on its way into the pipe. Together with
/// `take_pending` this tells a caller that every SIGUSR1 sent before now is in the pipe (or in
/// `out`), except in the short stretch where the kernel has handed a signal to a thread that
/// has not yet entered the handler.
pub fn handlers_running() bool {
    return in_flight.load(.seq_cst) > 0;
}

/// Takes the SIGUSR1s still pending for the process (sent, but not yet handed to any thread)
/// and returns their records, without blocking. Only a thread that blocks SIGUSR1 may call this
/// (the pump thread blocks every signal): for the others the handler takes them.
pub fn take_pending(out: []Record) usize {
    var set = linux.empty_sigset;
    linux.sigaddset(&set, linux.SIG.USR1);
    const zero = linux.timespec{ .sec = 0, .nsec = 0 };
    var count: usize = 0;
    while (count < out.len) {
        var info: linux.siginfo_t = undefined;
        const rc = linux.syscall4(
            .rt_sigtimedwait,
            @intFromPtr(&set),
            @intFromPtr(&info),
            @intFromPtr(&zero),
            linux.NSIG / 8,
        );
        const errno = sys.errno_of(rc);
        if (errno == .INTR) continue;
        // EAGAIN: none pending. Standard signals do not queue, so one call takes the one there is.
        if (errno != .SUCCESS) break;
        out[count] = record_of(info.fields.common.first.piduid.pid);
        count += 1;
    }
    return count;
}

/// Installs the SIGUSR1 handler (once) and returns the read end of the non-blocking pipe that
/// receives one `Record` (native-endian i32s) per signal. Later calls return the same fd.
pub fn install_sigusr1() Fail!i32 {
    install_lock.lock();
    defer install_lock.unlock();
    if (read_end >= 0) return read_end;

    var fds: [2]i32 = undefined;
    _ = try sys.check(
        linux.pipe2(&fds, .{ .NONBLOCK = true, .CLOEXEC = true }),
        "pipe2 for SIGUSR1",
    );
    errdefer for (fds) |descriptor| sys.close(descriptor);
    write_end.store(fds[1], .release);
    errdefer write_end.store(-1, .release);

    // Through libc: in a process that links it, libc owns the signal trampolines and may reserve
    // signals of its own, so its sigaction is the one to use.
    var action = std.posix.Sigaction{
        .handler = .{ .sigaction = on_sigusr1 },
        .mask = std.posix.empty_sigset,
        // Without SA_RESTART a signal sent by a service would make slow syscalls in whichever
        // thread takes it (Bun's included) fail with EINTR.
        .flags = std.posix.SA.SIGINFO | std.posix.SA.RESTART,
    };
    if (std.c.sigaction(std.posix.SIG.USR1, &action, null) != 0) {
        const errno: linux.E = @enumFromInt(@as(u16, @intCast(std.c._errno().*)));
        return diag.fail(errno, "sigaction(SIGUSR1): {s}", .{@tagName(errno)});
    }
    read_end = fds[0];
    return read_end;
}

/// Moves the queued records into `out` without blocking and returns how many it moved. When
/// that is `out.len`, more may be waiting.
pub fn read_senders(descriptor: i32, out: []Record) usize {
    var count: usize = 0;
    while (count < out.len) {
        const bytes = std.mem.sliceAsBytes(out[count..]);
        const rc = linux.read(descriptor, bytes.ptr, bytes.len);
        const errno = sys.errno_of(rc);
        if (errno == .INTR) continue;
        if (errno != .SUCCESS or rc == 0) break;
        // Only whole records are ever written, so reads come back in whole records.
        count += rc / @sizeOf(Record);
    }
    return count;
}

/// Longest parent chain we follow: service trees are shallow, and a bound keeps a pid loop
/// (possible when pids are reused mid-walk) from spinning.
pub const max_depth = 64;

/// True if `pid` is `ancestor` or its parent chain (from /proc) reaches `ancestor`. The pid is
/// whatever sent a signal, so a vanished process or an unreadable stat simply ends the walk.
/// A process reparented to init or a subreaper (its parent exited) is no longer found.
pub fn is_same_or_descendant(pid: i32, ancestor: i32) bool {
    if (pid <= 0 or ancestor <= 0) return false;
    var current = pid;
    var depth: usize = 0;
    while (depth <= max_depth) : (depth += 1) {
        if (current == ancestor) return true;
        // Pid 1 and kernel threads (parent 0) end every chain.
        if (current <= 1) return false;
        current = parent_of(current) orelse return false;
    }
    return false;
}

/// The parent pid from /proc/<pid>/stat, or null if the process is gone or the file is odd.
fn parent_of(pid: i32) ?i32 {
    var path_buffer: [32]u8 = undefined;
    const path = std.fmt.bufPrintZ(&path_buffer, "/proc/{d}/stat", .{pid}) catch return null;
    const rc = linux.open(path, .{ .ACCMODE = .RDONLY, .CLOEXEC = true }, 0);
    if (sys.errno_of(rc) != .SUCCESS) return null;
    const descriptor: i32 = @intCast(rc);
    defer sys.close(descriptor);

    // The fields up to the parent come well within this: comm is at most 64 bytes.
    var buffer: [512]u8 = undefined;
    var len: usize = 0;
    while (len < buffer.len) {
        const n = linux.read(descriptor, buffer[len..].ptr, buffer.len - len);
        const errno = sys.errno_of(n);
        if (errno == .INTR) continue;
        if (errno != .SUCCESS or n == 0) break;
        len += n;
    }
    return parent_from_stat(buffer[0..len]);
}

/// Parses "pid (comm) state ppid ..." Comm is chosen by the process itself and may hold spaces
/// and ')', so the fields after it are found from the last ')'; none of them can contain one.
pub fn parent_from_stat(stat: []const u8) ?i32 {
    const close_paren = std.mem.lastIndexOfScalar(u8, stat, ')') orelse return null;
    var fields = std.mem.tokenizeAny(u8, stat[close_paren + 1 ..], " \n");
    const state = fields.next() orelse return null;
    if (state.len != 1) return null;
    const parent = fields.next() orelse return null;
    const value = std.fmt.parseInt(i32, parent, 10) catch return null;
    if (value < 0) return null;
    return value;
}

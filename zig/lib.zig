//! The C ABI of libqrx, loaded by Bun through bun:ffi (src/native.ts is the other side).
//! Conventions (vchan.md §5.6): every export returns i32, >= 0 for success or a value and
//! -errno for failure, with a message available from `qrx_last_error`; handles are u32; lengths
//! are u32. Nothing here calls into JavaScript. No other Zig file exports symbols, and every
//! export is `pub`, which is how zig/abi_gen.zig finds them for src/abi.generated.ts; the types
//! they share with TypeScript live in zig/abi.zig.
const std = @import("std");
const linux = std.os.linux;

const abi = @import("abi.zig");
const constants = @import("constants.zig");
const diag = @import("diag.zig");
const net = @import("net.zig");
const sys = @import("sys.zig");
const exec = @import("exec.zig");
const handles = @import("handles.zig");
const vchan_mod = @import("vchan/vchan.zig");
const pump_mod = @import("pump/pump.zig");
const Pump = pump_mod.Pump;
const client_host = @import("client_host/listener.zig");

const Vchan = vchan_mod.Vchan;

var vchans = handles.Table(Vchan){};
var config_spin_ns = std.atomic.Value(u32).init(constants.spin_ns_default);
var config_pages_max = std.atomic.Value(u32).init(0);

fn failure() i32 {
    const errno = diag.errno();
    std.debug.assert(errno > 0);
    return -errno;
}

fn lookup(handle: u32) diag.Fail!*Vchan {
    return vchans.get(handle) orelse diag.fail(.BADF, "vchan handle {d} is not open", .{handle});
}

fn not_open(handle: u32) i32 {
    return refuse(.BADF, "vchan handle {d} is not open", .{handle});
}

fn result(value: diag.Fail!u32) i32 {
    const ok = value catch return failure();
    return @intCast(ok);
}

pub export fn qrx_abi_version() i32 {
    return abi.abi_version;
}

/// Copies the calling thread's last failure message into `buffer`; returns its length.
pub export fn qrx_last_error(buffer: [*]u8, capacity: u32) i32 {
    const message = diag.message();
    const count = @min(message.len, capacity);
    @memcpy(buffer[0..count], message[0..count]);
    return @intCast(count);
}

pub export fn qrx_set_config(key: u32, value: i32) i32 {
    const known = std.meta.intToEnum(abi.ConfigKey, key) catch {
        return refuse(.INVAL, "unknown config key {d}", .{key});
    };
    if (value < 0) return refuse(.INVAL, "config value {d} is negative", .{value});
    const unsigned: u32 = @intCast(value);
    switch (known) {
        .spin_ns => {
            if (unsigned > constants.spin_ns_max) {
                const limit = constants.spin_ns_max;
                const format = "spin of {d} ns is above the {d} ns limit";
                return refuse(.INVAL, format, .{ unsigned, limit });
            }
            config_spin_ns.store(unsigned, .release);
        },
        .pages_max => config_pages_max.store(unsigned, .release),
    }
    return 0;
}

/// Records why an export fails and returns its -errno.
fn refuse(code: linux.E, comptime format: []const u8, args: anytype) i32 {
    diag.record(code, format, args);
    return failure();
}

fn options(
    dir: [*]const u8,
    dir_len: u32,
    local_domain: i32,
    remote_domain: i32,
    port: i32,
) vchan_mod.Options {
    return .{
        .dir = dir[0..dir_len],
        .local_domain = local_domain,
        .remote_domain = remote_domain,
        .port = port,
        .pages_max = config_pages_max.load(.acquire),
        .spin_ns = config_spin_ns.load(.acquire),
    };
}

fn register(vchan: *Vchan) i32 {
    if (vchans.insert(vchan)) |handle| return @intCast(handle);
    vchan.close();
    std.heap.c_allocator.destroy(vchan);
    return refuse(.MFILE, "too many open vchans (limit {d})", .{constants.handles_max});
}

/// `backend`: 0 = shm, 1 = socket (vchan-socket compatible); `dir` is where the socket goes.
pub export fn vx_server_init(
    backend: u32,
    dir: [*]const u8,
    dir_len: u32,
    local_domain: i32,
    remote_domain: i32,
    port: i32,
    read_min: u32,
    write_min: u32,
) i32 {
    const known = vchan_mod.backend_from_id(backend) catch return failure();
    const vchan = std.heap.c_allocator.create(Vchan) catch {
        return refuse(.NOMEM, "out of memory", .{});
    };
    var server_options = options(dir, dir_len, local_domain, remote_domain, port);
    server_options.read_min = read_min;
    server_options.write_min = write_min;
    vchan.server_init(known, server_options) catch {
        std.heap.c_allocator.destroy(vchan);
        return failure();
    };
    return register(vchan);
}

pub export fn vx_client_init_async(
    backend: u32,
    dir: [*]const u8,
    dir_len: u32,
    local_domain: i32,
    remote_domain: i32,
    port: i32,
) i32 {
    const known = vchan_mod.backend_from_id(backend) catch return failure();
    const vchan = std.heap.c_allocator.create(Vchan) catch {
        return refuse(.NOMEM, "out of memory", .{});
    };
    vchan.client_init(known, options(dir, dir_len, local_domain, remote_domain, port)) catch {
        std.heap.c_allocator.destroy(vchan);
        return failure();
    };
    return register(vchan);
}

pub export fn vx_client_init_async_finish(handle: u32) i32 {
    const vchan = lookup(handle) catch return failure();
    if (vchan.role() != .client) {
        return refuse(.INVAL, "vchan handle {d} is a server", .{handle});
    }
    return result(vchan.finish());
}

pub export fn vx_connect_wait(handle: u32, timeout_ms: i32) i32 {
    const vchan = lookup(handle) catch return failure();
    vchan.connect_wait(timeout_ms) catch return failure();
    return 0;
}

pub export fn vx_fd_for_select(handle: u32) i32 {
    const vchan = lookup(handle) catch return failure();
    return vchan.fd_for_select();
}

pub export fn vx_wait(handle: u32) i32 {
    const vchan = lookup(handle) catch return failure();
    vchan.wait() catch return failure();
    return 0;
}

pub export fn vx_is_open(handle: u32) i32 {
    const vchan = lookup(handle) catch return failure();
    return @intFromEnum(vchan.state());
}

pub export fn vx_data_ready(handle: u32) i32 {
    const vchan = lookup(handle) catch return failure();
    return @intCast(vchan.data_ready());
}

pub export fn vx_buffer_space(handle: u32) i32 {
    const vchan = lookup(handle) catch return failure();
    return @intCast(vchan.buffer_space());
}

fn checked_length(len: u32) diag.Fail!u32 {
    if (len > std.math.maxInt(i32)) return diag.fail(.INVAL, "length {d} is too large", .{len});
    return len;
}

pub export fn vx_read(handle: u32, buffer: [*]u8, len: u32) i32 {
    const vchan = lookup(handle) catch return failure();
    const count = checked_length(len) catch return failure();
    return result(vchan.read(buffer[0..count]));
}

pub export fn vx_recv(handle: u32, buffer: [*]u8, len: u32) i32 {
    const vchan = lookup(handle) catch return failure();
    const count = checked_length(len) catch return failure();
    return result(vchan.recv(buffer[0..count]));
}

pub export fn vx_write(handle: u32, buffer: [*]const u8, len: u32) i32 {
    const vchan = lookup(handle) catch return failure();
    const count = checked_length(len) catch return failure();
    return result(vchan.write(buffer[0..count]));
}

pub export fn vx_send(handle: u32, buffer: [*]const u8, len: u32) i32 {
    const vchan = lookup(handle) catch return failure();
    const count = checked_length(len) catch return failure();
    return result(vchan.send(buffer[0..count]));
}

pub export fn vx_set_blocking(handle: u32, on: u32) i32 {
    const vchan = lookup(handle) catch return failure();
    vchan.set_blocking(on != 0);
    return 0;
}

pub export fn vx_info(handle: u32, out: *abi.Info) i32 {
    const vchan = lookup(handle) catch return failure();
    const layout = vchan.layout();
    const stats = vchan.stats();
    out.* = .{
        .role = @intFromEnum(vchan.role()),
        .state = @intFromEnum(vchan.state()),
        .left_order = if (layout) |known| known.left_order else 0,
        .right_order = if (layout) |known| known.right_order else 0,
        .read_ring_bytes = vchan.read_ring_bytes(),
        .write_ring_bytes = vchan.write_ring_bytes(),
        .pages = if (layout) |known| known.pages() else 0,
        .kicks = stats.kicks,
        .wakeups = stats.wakeups,
        .sleeps = stats.sleeps,
        .spin_hits = stats.spin_hits,
        .spin_misses = stats.spin_misses,
        .spin_budget_ns = vchan.spin_budget_ns(),
        .local_domain = vchan.local_domain(),
        .remote_domain = vchan.remote_domain(),
        .port = vchan.port(),
        .backend = @intFromEnum(vchan.backend()),
    };
    return 0;
}

/// Why the vchan disconnected (empty while it has not).
pub export fn vx_reason(handle: u32, buffer: [*]u8, capacity: u32) i32 {
    const vchan = lookup(handle) catch return failure();
    const reason = vchan.reason();
    const count = @min(reason.len, capacity);
    @memcpy(buffer[0..count], reason[0..count]);
    return @intCast(count);
}

pub export fn vx_close(handle: u32) i32 {
    const vchan = vchans.remove(handle) orelse return not_open(handle);
    vchan.close();
    std.heap.c_allocator.destroy(vchan);
    return 0;
}

/// Test hook: scribble on the shared page as a hostile peer would (shm only).
pub export fn vx_debug_poke(handle: u32, offset: u32, value: u32) i32 {
    const vchan = lookup(handle) catch return failure();
    vchan.debug_poke(offset, value) catch return failure();
    return 0;
}

// ---------------------------------------------------------------- the pump

/// One pump per process, started on first use; its thread lives until the process ends.
var pump: Pump = .{};
var pump_started = std.atomic.Value(bool).init(false);
var pump_start_lock: std.Thread.Mutex = .{};

fn started_pump() diag.Fail!*Pump {
    if (pump_started.load(.acquire)) return &pump;
    pump_start_lock.lock();
    defer pump_start_lock.unlock();
    if (!pump_started.load(.acquire)) {
        try pump.start();
        pump_started.store(true, .release);
    }
    return &pump;
}

/// Starts the pump if needed; returns the doorbell fd JS reads to learn that events wait.
pub export fn qp_start() i32 {
    const started = started_pump() catch return failure();
    return started.queue.doorbell_read;
}

/// Hands vchan `handle` to the pump as a stream of `kind`; the handle is dead afterwards.
/// With `spawn_len` > 0, a service stream's service (argv then environment, NUL-terminated,
/// `spawn_argc` of them argv; `spawn_flags` as `ServiceStdioFlags`) is started by the pump the
/// moment the data vchan connects.
pub export fn qp_attach(
    handle: u32,
    kind: u32,
    own_version: u32,
    send_first: u32,
    connect_timeout_ms: i32,
    flags: u32,
    spawn_strings: ?[*]const u8,
    spawn_len: u32,
    spawn_argc: u32,
    spawn_flags: u32,
) i32 {
    const started = started_pump() catch return failure();
    const stream_kind = std.meta.intToEnum(abi.StreamKind, kind) catch {
        return refuse(.INVAL, "unknown stream kind {d}", .{kind});
    };
    if (own_version < 2 or own_version > 4) {
        return refuse(.INVAL, "protocol version {d} is not 2, 3 or 4", .{own_version});
    }
    const wanted: abi.ServiceStdioFlags = @bitCast(spawn_flags);
    if (wanted._pad != 0) {
        return refuse(.INVAL, "unknown service stdio flags 0x{x}", .{spawn_flags});
    }
    var spawn: ?pump_mod.SpawnRequest = null;
    if (spawn_len > 0) {
        const strings = spawn_strings orelse return refuse(.INVAL, "no spawn strings", .{});
        spawn = .{
            .strings = strings[0..spawn_len],
            .argc = spawn_argc,
            .with_stderr = wanted.stderr_pipe,
            .stdout_pipe = wanted.stdout_pipe,
        };
    }
    const vchan = vchans.remove(handle) orelse return not_open(handle);
    const id = started.attach(vchan, .{
        .kind = stream_kind,
        .own_version = own_version,
        .send_first = send_first != 0,
        .connect_timeout_ms = connect_timeout_ms,
        .flags = @bitCast(flags),
        .spawn = spawn,
    }) catch return failure();
    return @intCast(id);
}

pub export fn qp_set_stdio(
    stream: u32,
    stdin_fd: i32,
    stdout_fd: i32,
    stderr_fd: i32,
    has_child: u32,
) i32 {
    const fds = .{ stdin_fd, stdout_fd, stderr_fd, has_child != 0 };
    pump.with_stream(stream, Pump.set_stdio, fds) catch return failure();
    return 0;
}

/// Where a client stream writes the remote stderr (default: fd 2); the pump owns `fd` after.
pub export fn qp_set_remote_stderr(stream: u32, fd: i32) i32 {
    pump.with_stream(stream, Pump.set_remote_stderr, .{fd}) catch return failure();
    return 0;
}

/// Creates a service's stdio; writes the child's ends (stdin, stdout, stderr) to `out`.
/// `flags` is `abi.ServiceStdioFlags`.
pub export fn qp_make_service_stdio(stream: u32, out: *[3]i32, flags: u32) i32 {
    const wanted: abi.ServiceStdioFlags = @bitCast(flags);
    if (wanted._pad != 0) return refuse(.INVAL, "unknown service stdio flags 0x{x}", .{flags});
    const pipes = .{ wanted.stderr_pipe, wanted.stdout_pipe };
    out.* = pump.with_stream(stream, Pump.make_service_stdio, pipes) catch return failure();
    return 0;
}

/// `strings`: argc argv strings (an absolute path first), then the environment's, each
/// NUL-terminated; `flags` as `qp_make_service_stdio`'s.
pub export fn qp_set_prefix(stream: u32, data: [*]const u8, len: u32) i32 {
    pump.with_stream(stream, Pump.set_prefix, .{data[0..len]}) catch return failure();
    return 0;
}

pub export fn qp_send(stream: u32, msg_type: u32, data: [*]const u8, len: u32) i32 {
    pump.send(stream, msg_type, data[0..len]) catch return failure();
    return 0;
}

/// The exit status of the hosted call on `stream` goes to client host `connection` as soon as
/// the stream is done with the remote's status.
pub export fn qp_reply_when_done(stream: u32, connection: u32) i32 {
    pump.with_stream(stream, Pump.reply_when_done, .{connection}) catch return failure();
    return 0;
}

pub export fn qp_local_exit(stream: u32, status: i32) i32 {
    pump.with_stream(stream, Pump.local_exit, .{status}) catch return failure();
    return 0;
}

pub export fn qp_finish_with(stream: u32, status: i32, eofs: u32) i32 {
    pump.with_stream(stream, Pump.finish_with, .{ status, eofs != 0 }) catch return failure();
    return 0;
}

/// The child behind a data stream, so the pump can map SIGUSR1 senders to it.
pub export fn qp_set_child(stream: u32, pid: i32) i32 {
    pump.set_child(stream, pid) catch return failure();
    return 0;
}

/// Has the pump thread take SIGUSR1 itself: mode 1 maps senders to streams by their child,
/// mode 2 switches every data stream (a client's one call).
pub export fn qp_watch_sigusr1(mode: u32) i32 {
    const chosen = std.meta.intToEnum(abi.Sigusr1Mode, mode) catch {
        return refuse(.INVAL, "SIGUSR1 mode {d} is not 1 or 2", .{mode});
    };
    const running = started_pump() catch return failure();
    running.watch_sigusr1(chosen) catch return failure();
    return 0;
}

/// A data stream's vchan traffic and ring sizes, for `qrx lab top` (ENOTCONN once it finished).
pub export fn qp_stream_traffic(stream: u32, out: *pump_mod.Traffic) i32 {
    out.* = pump.with_stream(stream, Pump.traffic, .{}) catch return failure();
    return 0;
}

pub export fn qp_single_socket(stream: u32) i32 {
    pump.with_stream(stream, Pump.single_socket, .{}) catch return failure();
    return 0;
}

pub export fn qp_front_end_synced(stream: u32) i32 {
    pump.with_stream(stream, Pump.front_end_synced, .{}) catch return failure();
    return 0;
}

/// Copies whole event records into `out`; returns the bytes written. When a record does not
/// fit, returns -EMSGSIZE and `qp_pending_event_bytes` tells the size needed.
pub export fn qp_poll_events(out: [*]u8, capacity: u32) i32 {
    if (!pump_started.load(.acquire)) return 0;
    const written = pump.drain_events(out[0..capacity]);
    if (written == 0 and pump.pending_event_bytes() > capacity) {
        const needed = pump.pending_event_bytes();
        return refuse(.MSGSIZE, "next event needs {d} bytes", .{needed});
    }
    return @intCast(written);
}

pub export fn qp_pending_event_bytes() i32 {
    if (!pump_started.load(.acquire)) return 0;
    return @intCast(pump.pending_event_bytes());
}

pub export fn qp_close(stream: u32) i32 {
    pump.close(stream) catch return failure();
    return 0;
}

// ---------------------------------------------------------------- the client host

/// Accepts qrexec-client-vm front ends (zig/client_host/); one per process.
var listener: client_host.Listener = .{};

fn report_to_pump(
    context: *anyopaque,
    id: u32,
    kind: pump_mod.events.Kind,
    value: i32,
    payload: []const u8,
) void {
    const target: *Pump = @ptrCast(@alignCast(context));
    target.report(id, kind, value, payload);
}

/// Front end `connection` writes `text` to its stderr (a `message` reply).
pub export fn qh_message(connection: u32, text: [*]const u8, len: u32) i32 {
    listener.send_message(connection, text[0..len]) catch return failure();
    return 0;
}

fn reply_to_front_end(connection: u32, status: i32) void {
    // A front end that is gone (or was answered already) needs no status.
    listener.reply(connection, .exit, status) catch {};
}

/// Listens on `path` (a stale socket there is replaced); requests arrive as pump events.
pub export fn qh_listen(path: [*]const u8, len: u32) i32 {
    const started = started_pump() catch return failure();
    const reporter: client_host.Reporter = .{ .context = started, .report = report_to_pump };
    listener.listen(path[0..len], reporter) catch return failure();
    started.mutex.lock();
    defer started.mutex.unlock();
    started.reply_hook = reply_to_front_end;
    return 0;
}

/// Answers front end `connection` (`abi.ClientReply`: exit with value = status, fallback,
/// accepted, start_local; refused is the listener's own).
pub export fn qh_reply(connection: u32, kind: u32, value: i32) i32 {
    const reply_kind = std.meta.intToEnum(abi.ClientReply, kind) catch {
        return refuse(.INVAL, "reply kind {d} is not a client reply", .{kind});
    };
    listener.reply(connection, reply_kind, value) catch return failure();
    return 0;
}

// ---------------------------------------------------------------- connections and signals

/// A connected unix stream socket (socket services); the fd is the caller's.
pub export fn qrx_connect_unix(path: [*]const u8, len: u32) i32 {
    return net.connect_unix(path[0..len]) catch return failure();
}

/// A connected TCP socket to a numeric host (/dev/tcp services).
pub export fn qrx_connect_tcp(host: [*]const u8, len: u32, port: u32) i32 {
    if (port == 0 or port > 65535) {
        return refuse(.INVAL, "TCP port {d} is not 1..65535", .{port});
    }
    return net.connect_tcp(host[0..len], @intCast(port)) catch return failure();
}

/// A stream socketpair (a local program's stdio).
pub export fn qrx_socketpair(out: *[2]i32) i32 {
    out.* = net.socketpair_stream() catch return failure();
    return 0;
}

/// A close-on-exec pipe: `out` gets the read end, then the write end (the vchan benchmark's
/// kernel baseline; Bun has no pipe()).
pub export fn qrx_pipe(out: *[2]i32) i32 {
    _ = sys.check(linux.pipe2(out, .{ .CLOEXEC = true }), "pipe2") catch return failure();
    return 0;
}

const F_GETPIPE_SZ: i32 = 1032;

/// What the kernel buffers between the ends of `fd`: a pipe's capacity, a socket's send buffer.
pub export fn qrx_kernel_buffer_bytes(fd: i32) i32 {
    var stat: linux.Stat = undefined;
    _ = sys.check(linux.fstat(fd, &stat), "fstat") catch return failure();
    if (linux.S.ISFIFO(stat.mode)) {
        return sys.fd(linux.fcntl(fd, F_GETPIPE_SZ, 0), "F_GETPIPE_SZ") catch failure();
    }
    if (!linux.S.ISSOCK(stat.mode)) return refuse(.INVAL, "fd {d} is no pipe or socket", .{fd});
    var bytes: i32 = 0;
    var length: linux.socklen_t = @sizeOf(i32);
    const rc = linux.getsockopt(fd, linux.SOL.SOCKET, linux.SO.SNDBUF, @ptrCast(&bytes), &length);
    _ = sys.check(rc, "getsockopt(SO_SNDBUF)") catch return failure();
    return bytes;
}

/// Replaces this process with `path` (zig/exec.zig); returns only on failure. `argv` and `env`
/// are `argc` and `envc` NUL-terminated strings packed one after another.
pub export fn qrx_exec(
    path: [*:0]const u8,
    argv: [*]const u8,
    argv_len: u32,
    argc: u32,
    env: [*]const u8,
    env_len: u32,
    envc: u32,
) i32 {
    const errno = exec.exec(path, argv[0..argv_len], argc, env[0..env_len], envc);
    return refuse(errno, "execve failed", .{});
}

/// A close-on-exec copy of `fd` numbered 3 or above (Bun's spawn cannot place fd 0 elsewhere).
pub export fn qrx_dup(fd: i32) i32 {
    const rc = linux.fcntl(fd, sys.F_DUPFD_CLOEXEC, 3);
    return sys.fd(rc, "F_DUPFD_CLOEXEC") catch return failure();
}

// ---------------------------------------------------------------- filecopy names and links
// Name and symlink-target validation of the qubes.Filecopy receiver (spec filecopy.md §3.4,
// §3.5). Unlike the exports above, these return the errno as a *positive* value, because it is
// the value the receiver writes into its result (filecopy.md §2.6): 0 accepted, 84 EILSEQ (bad
// name, or forbidden character in a target), 67 ENOLINK (symlink escapes or is top-level).
// 22 EINVAL means a caller bug: unknown flag bits, or a null pointer with a nonzero length.
// Nothing is recorded for `qrx_last_error`. `flags` is `filecopy_names.Flags` (bit 0:
// allow_all_names).

const filecopy_names = @import("filecopy/names.zig");

/// `ptr[0..len]`, or null for a null pointer with a nonzero length. Bun passes null for an
/// empty buffer, which is the empty string.
fn names_bytes(ptr: ?[*]const u8, len: u32) ?[]const u8 {
    const base = ptr orelse return if (len == 0) "" else null;
    return base[0..len];
}

fn names_flags(flags: u32) ?filecopy_names.Flags {
    const decoded: filecopy_names.Flags = @bitCast(flags);
    if (decoded._pad != 0) return null;
    return decoded;
}

const names_errno_invalid: i32 = @intFromEnum(linux.E.INVAL);

/// A regular-file or directory name: 0, or 84 (EILSEQ).
pub export fn qf_validate_path(ptr: ?[*]const u8, len: u32, flags: u32) i32 {
    const name = names_bytes(ptr, len) orelse return names_errno_invalid;
    const validation = names_flags(flags) orelse return names_errno_invalid;
    filecopy_names.validatePath(name, validation) catch |err| {
        return filecopy_names.errnoOf(err);
    };
    return 0;
}

/// A symlink's name and target: 0, 84 (EILSEQ) or 67 (ENOLINK).
pub export fn qf_validate_symlink(
    name_ptr: ?[*]const u8,
    name_len: u32,
    target_ptr: ?[*]const u8,
    target_len: u32,
    flags: u32,
) i32 {
    const name = names_bytes(name_ptr, name_len) orelse return names_errno_invalid;
    const target = names_bytes(target_ptr, target_len) orelse return names_errno_invalid;
    const validation = names_flags(flags) orelse return names_errno_invalid;
    filecopy_names.validateSymlink(name, target, validation) catch |err| {
        return filecopy_names.errnoOf(err);
    };
    return 0;
}

/// The sender's pre-flight "safe for display" check: 1 safe, 0 not (or a null pointer with a
/// nonzero length).
pub export fn qf_safe_for_display(ptr: ?[*]const u8, len: u32) i32 {
    const text = names_bytes(ptr, len) orelse return 0;
    return @intFromBool(filecopy_names.isSafeForDisplay(text));
}

// ---------------------------------------------------------------- filecopy stream engine
// The qubes.Filecopy sender and receiver (spec filecopy.md §2-§4), each one blocking call on
// the caller's thread. Conventions as above: -errno with a `qrx_last_error` message on failure.

const filecopy_pack = @import("filecopy/pack.zig");
const filecopy_unpack = @import("filecopy/unpack.zig");

/// The receiver: returns the code it sent as its 32-bit pattern (0, an errno, 31415926
/// LEGAL_EOF, (uint32)-84 for a bad directory name), or -1 when it stopped without sending a
/// result (bad nanoseconds, filecopy.md §2.2), with a message. Flags: bit 0 allow_all_names,
/// bit 1 verbose. `space_margin`: `--wait-for-space` (0: off).
pub export fn qf_unpack(
    in_fd: i32,
    out_fd: i32,
    dir_fd: i32,
    flags: u32,
    space_margin: u32,
    stats: *filecopy_unpack.Stats,
) i32 {
    const decoded: filecopy_unpack.Flags = @bitCast(flags);
    if (decoded._pad != 0) {
        stats.* = std.mem.zeroes(filecopy_unpack.Stats);
        diag.record(.INVAL, "unknown unpack flags 0x{x}", .{flags});
        return -1;
    }
    return filecopy_unpack.unpack_waiting(in_fd, out_fd, dir_fd, decoded, space_margin, stats);
}

/// The sender: `paths` are NUL-terminated and concatenated. Returns 0 (CRC matched), a
/// positive remote code (exact value in `out.remote_code`), -EBADMSG (CRC mismatch), -EPIPE
/// (EOF instead of a result), or another -errno for a local error. Flags: bit 0
/// ignore_symlinks. `progress` is called on this thread, at most once per MiB and at the end.
pub export fn qf_pack(
    out_fd: i32,
    in_fd: i32,
    paths: ?[*]const u8,
    paths_len: u32,
    flags: u32,
    progress: ?filecopy_pack.Progress,
    out: *filecopy_pack.Result,
) i32 {
    out.* = std.mem.zeroes(filecopy_pack.Result);
    const decoded: filecopy_pack.Flags = @bitCast(flags);
    if (decoded._pad != 0) {
        return refuse(.INVAL, "unknown pack flags 0x{x}", .{flags});
    }
    const list: []const u8 = if (paths) |base| base[0..paths_len] else "";
    return filecopy_pack.pack(out_fd, in_fd, list, decoded, progress, out);
}

//! The pump: one thread per process that moves every stream's bytes (vchans, service stdio,
//! local stdio) with one poll loop, so JavaScript never touches data. JS attaches streams and
//! commands them through `lib.zig`; the pump reports through `events.Queue`.
//!
//! A stream goes connecting -> hello -> running -> finished. Connecting waits (with a deadline)
//! for the vchan's peer; hello exchanges MSG_HELLO and settles the version (min of both,
//! qrexec-protocol.md §4.2); running is the control or data state machine. On the socket
//! backend a stream that is done may first go through flushing (see `finish`).
//!
//! Locking: `mutex` guards the stream table and the event queue. The pump holds it while it
//! works and releases it around poll(); JS calls take it briefly and then wake the pump through
//! `wake_fd` (a control message sent on a running shm channel goes into the ring right there,
//! under the lock, and wakes the pump only for what did not fit: `send`).
const std = @import("std");
const linux = std.os.linux;
const assert = std.debug.assert;

const diag = @import("../diag.zig");
const handles = @import("../handles.zig");
const protocol = @import("../protocol.zig");
const sys = @import("../sys.zig");
const signals = @import("../signals.zig");
const Vchan = @import("../vchan/vchan.zig").Vchan;
const control_mod = @import("control.zig");
const Control = control_mod.Control;
const data_mod = @import("data.zig");
const spawn_mod = @import("spawn.zig");
const Data = data_mod.Data;
pub const Flags = @import("data.zig").Flags;
/// Stage times in a data stream's DONE record (u64 each, `data.Mark` order).
pub const mark_count = data_mod.mark_count;
pub const events = @import("events.zig");

const Fail = diag.Fail;

/// siginfo_t.si_code of a child's end (waitid).
const CLD_EXITED = 1;
const CLD_KILLED = 2;
const CLD_DUMPED = 3;

/// Why a control channel fails when its peer leaves too much unread (control.zig's limit).
const slow_peer_reason = "slow peer: {d} bytes of control messages left unread (limit {d})";

pub const Kind = enum(u32) { control = 0, data_service = 1, data_client = 2 };

const Phase = enum { connecting, hello, running, flushing, finished };

/// Longest a finished stream waits for its socket to take the bytes it wrote.
const flush_timeout_ms = 10_000;

/// How a SIGUSR1 finds its stream: by the sender's ancestry (an agent serving many calls), or
/// every data stream (a client with one call, whose local program signals).
pub const Sigusr1Mode = enum(u32) { off = 0, by_child = 1, any = 2 };

pub const AttachOptions = struct {
    kind: Kind,
    own_version: u32,
    /// Send our HELLO before the peer's arrives (vchan servers, the Linux agent); otherwise
    /// reply to the peer's with min(own, peer).
    send_first: bool,
    connect_timeout_ms: i32,
    flags: Flags = .{},
    /// A service stream's service, started by the pump the moment the data vchan connects.
    /// Given with the stream, so that no later command waits on the pump's lock while it
    /// works on the new stream.
    spawn: ?SpawnRequest = null,
};

/// Argv then the environment, each NUL-terminated (`spawn.Spec`), and how its stdio is made.
pub const SpawnRequest = struct {
    strings: []const u8,
    argc: u32,
    with_stderr: bool,
    stdout_pipe: bool,
};

const Stream = struct {
    /// The pump's, for what the stream holds (stream commands get no pump).
    allocator: std.mem.Allocator,
    id: u32 = 0,
    kind: Kind,
    vchan: *Vchan,
    vchan_closed: bool = false,
    phase: Phase = .connecting,
    deadline_ns: u64,
    own_version: u32,
    send_first: bool,
    hello_sent: bool = false,
    peer_version: ?u32 = null,
    version: u32 = 0,
    body: union(enum) { control: Control, data: Data },
    buffers: ?[]u8 = null,
    /// The local child (service or local program), for mapping SIGUSR1 senders to this stream.
    child_pid: i32 = 0,
    /// A service's pidfd, polled until it exits (`take_child_exit`); -1 otherwise.
    child_pidfd: i32 = -1,
    /// The child is one the pump started (`spawn`), so ours to reap, not Bun's.
    owns_child: bool = false,
    /// A hosted call's front end (client host connection), told its exit status by this
    /// thread when the stream is done with the remote's status (`reply_when_done`).
    reply_to: ?u32 = null,
    /// With `Flags.front_end_signals`: whether the front end was asked, and has answered,
    /// that every SIGUSR1 its local program sent it is on its way (`settle_held_eof`).
    front_end_sync: enum { none, asked, answered } = .none,
    /// The service to start when the data vchan connects (`AttachOptions.spawn`).
    spawn: ?*spawn_mod.Spec = null,
    /// The event a flushing stream reports once flushed (the message lives in `outcome_buffer`).
    outcome: struct { kind: events.Kind = .done, value: i32 = 0, message_len: u32 = 0 } = .{},
    outcome_buffer: [outcome_message_bytes_max]u8 = undefined,
    /// Poll results for this round, filled from the pollfd array.
    /// For the vchan's `poll_fds` (one or two of them this round).
    revents_vchan: [2]i16 = .{ 0, 0 },
    vchan_fds: u32 = 0,
    revents_stdin: i16 = 0,
    revents_stdout: i16 = 0,
    revents_stderr: i16 = 0,
    revents_child: i16 = 0,
};

const OwedReply = struct { connection: u32, status: i32 };

/// A caller's exit status from the remote's and its local program's, as src/protocol/exit.ts
/// `clientExitCode` makes it (§8): the remote's if not 0, else the local program's (0 without
/// one), the low 8 bits.
pub fn client_exit_status(remote: i32, local: ?i32) i32 {
    const status = if (remote != 0) remote else local orelse 0;
    return status & 0xff;
}

/// The layout `qp_stream_traffic` fills (four u64, src/native.ts reads them in this order).
pub const Traffic = extern struct {
    bytes_read: u64,
    bytes_written: u64,
    read_ring_bytes: u64,
    write_ring_bytes: u64,
};

const streams_max = 1024;
/// Event records a stream can leave queued besides control messages: spawned, connected, then
/// done or failed with a message of at most `outcome_buffer`'s size (events.zig, "Limits").
pub const lifecycle_bytes_max =
    streams_max * 3 * (events.record_header_bytes + outcome_message_bytes_max);
const outcome_message_bytes_max = 240;
/// Per stream: up to two vchan fds, stdin, stdout, stderr, a service's pidfd; and the pidfds of
/// services that outlived their streams, up to `orphans_polled_max` of them.
const pollfds_max = 2 + 6 * streams_max + orphans_polled_max;
/// Orphans beyond these are reaped when the pump wakes for anything else.
const orphans_polled_max = 64;

/// Which of a stream's fds a pollfd is.
const Which = enum(u3) { vchan0, vchan1, stdin, stdout, stderr, child };

pub const Pump = struct {
    /// Streams and their buffers, vchans (`attach` takes ones made with it), queued control
    /// messages and the event queue. libc's in the library, whose threads all share it; tests
    /// pass `std.testing.allocator`, so that a leak fails them.
    allocator: std.mem.Allocator = std.heap.c_allocator,
    mutex: std.Thread.Mutex = .{},
    thread: ?std.Thread = null,
    wake_fd: i32 = -1,
    /// Pidfds of services the pump started whose streams were closed before they exited: still
    /// ours to reap (`reap_orphans`).
    orphans: std.ArrayListUnmanaged(i32) = .{},
    /// SIGUSR1 records (zig/signals.zig), read here so single-socket mode is entered by the same
    /// thread that reads the service's output, before it could see that output's EOF (§6.6).
    sigusr1_fd: i32 = -1,
    sigusr1_mode: Sigusr1Mode = .off,
    /// A SIGUSR1 in `.any` mode that came before any data stream was configured.
    sigusr1_pending: bool = false,
    /// `.by_child` records no stream claimed yet: a service can signal before JS has told us its
    /// pid (the handler may even run on the JS thread between spawn and `set_child`).
    unclaimed: [8]signals.Record = undefined,
    unclaimed_count: u32 = 0,
    stopping: bool = false,
    /// Answers a hosted call's front end (zig/lib.zig sets it when the client host listens).
    reply_hook: ?*const fn (connection: u32, status: i32) void = null,
    /// Exit statuses owed to front ends, sent by the pump thread outside the lock: the client
    /// host's listener takes its own lock and then the pump's, never the other way round.
    owed_replies: std.ArrayListUnmanaged(OwedReply) = .{},
    streams: handles.Table(Stream) = .{},
    /// The streams in `streams`, packed, so the loop visits only live ones (the table has
    /// `handles_max` slots; scanning all of them several times per wakeup cost a fifth of the
    /// pump's CPU in a 1 GiB call). Changed only under `mutex`.
    live: [streams_max]*Stream = undefined,
    live_count: u32 = 0,
    /// Set up by `start`; `stop` is for a pump that started.
    queue: events.Queue = undefined,
    pollfds: [pollfds_max]linux.pollfd = undefined,
    /// For each pollfd: the stream it belongs to (null for the wake fd) and which of its fds.
    /// Stream ids, not pointers: JS may close a stream while the pump polls without the lock.
    owners: [pollfds_max]struct { stream_id: u32, which: Which } = undefined,

    pub fn start(self: *Pump) Fail!void {
        self.queue = events.Queue.init(self.allocator) catch return diag.fail(
            .MFILE,
            "cannot create the pump's doorbell pipe",
            .{},
        );
        self.wake_fd = try sys.fd(
            linux.eventfd(0, linux.EFD.CLOEXEC | linux.EFD.NONBLOCK),
            "eventfd",
        );
        self.thread = std.Thread.spawn(.{}, run, .{self}) catch {
            return diag.fail(.AGAIN, "cannot start the pump thread", .{});
        };
    }

    pub fn stop(self: *Pump) void {
        self.mutex.lock();
        self.stopping = true;
        self.mutex.unlock();
        self.wake();
        if (self.thread) |thread| thread.join();
        self.thread = null;
        for (&self.streams.items) |*slot| {
            if (slot.*) |stream| self.release(stream);
            slot.* = null;
        }
        self.live_count = 0;
        for (self.orphans.items) |pidfd| sys.close(pidfd);
        self.orphans.deinit(self.allocator);
        self.owed_replies.deinit(self.allocator);
        sys.close(self.wake_fd);
        self.queue.deinit();
    }

    /// Queues an event from another thread (the client host's).
    pub fn report(self: *Pump, id: u32, kind: events.Kind, value: i32, payload: []const u8) void {
        self.mutex.lock();
        defer self.mutex.unlock();
        self.queue.push(id, kind, value, payload);
    }

    pub fn wake(self: *Pump) void {
        const one: u64 = 1;
        _ = linux.write(self.wake_fd, std.mem.asBytes(&one), 8);
    }

    // ------------------------------------------------------------ commands (any thread)

    /// Takes ownership of `vchan` (also on failure).
    pub fn attach(self: *Pump, vchan: *Vchan, options: AttachOptions) Fail!u32 {
        const stream = try self.create_stream(vchan, options);
        if (options.spawn) |request| {
            stream.spawn = spawn_spec(stream, request) catch |err| {
                self.release(stream);
                return err;
            };
        }
        self.mutex.lock();
        defer self.mutex.unlock();
        // The poll set has room for `streams_max` streams; the handle table alone has more slots.
        const inserted = if (self.live_count < streams_max) self.streams.insert(stream) else null;
        const id = inserted orelse {
            self.release(stream);
            return diag.fail(
                .MFILE,
                "too many streams in this process (limit {d})",
                .{streams_max},
            );
        };
        stream.id = id;
        self.live[self.live_count] = stream;
        self.live_count += 1;
        if (self.sigusr1_pending) switch (stream.body) {
            .data => |*data| {
                data.request_single_socket();
                self.sigusr1_pending = false;
            },
            .control => {},
        };
        self.wake();
        return id;
    }

    /// A stream around `vchan`, not yet in the table; closes `vchan` when it fails.
    fn create_stream(self: *Pump, vchan: *Vchan, options: AttachOptions) Fail!*Stream {
        const allocator = self.allocator;
        errdefer close_vchan(allocator, vchan);
        const stream = allocator.create(Stream) catch {
            return diag.fail(.NOMEM, "out of memory", .{});
        };
        errdefer allocator.destroy(stream);
        vchan.set_blocking(false);
        const timeout_ms: u64 = @intCast(@max(options.connect_timeout_ms, 0));
        const timeout_ns = timeout_ms * std.time.ns_per_ms;
        stream.* = .{
            .allocator = allocator,
            .kind = options.kind,
            .vchan = vchan,
            .deadline_ns = if (options.connect_timeout_ms < 0) 0 else sys.now_ns() + timeout_ns,
            .own_version = options.own_version,
            .send_first = options.send_first,
            .body = undefined,
        };
        switch (options.kind) {
            .control => stream.body = .{ .control = .{ .vchan = vchan, .allocator = allocator } },
            .data_service, .data_client => {
                // The chunk-length bug knob (a test of mirage-qubes 2.0 behaviour) gathers whole
                // "writes" in a buffer of its own.
                const gathered: usize =
                    if (options.flags.mirage_chunk_bug) data_mod.mirage_write_bytes_max else 0;
                const half = protocol.max_data_chunk_v3;
                const buffers = allocator.alloc(u8, 2 * half + gathered) catch {
                    return diag.fail(.NOMEM, "out of memory", .{});
                };
                stream.buffers = buffers;
                stream.body = .{
                    .data = Data.init(
                        vchan,
                        options.kind == .data_service,
                        options.flags,
                        buffers[0..half],
                        buffers[half .. 2 * half],
                    ),
                };
                stream.body.data.gathered = buffers[2 * half ..];
            },
        }
        return stream;
    }

    /// Runs `action(stream, args...)` under the lock, then wakes the pump.
    pub fn with_stream(
        self: *Pump,
        id: u32,
        comptime action: anytype,
        args: anytype,
    ) @typeInfo(@TypeOf(action)).@"fn".return_type.? {
        self.mutex.lock();
        defer self.mutex.unlock();
        const stream = try self.open_stream(id);
        defer self.wake();
        return @call(.auto, action, .{stream} ++ args);
    }

    /// The open stream `id` (the caller holds the lock).
    fn open_stream(self: *Pump, id: u32) Fail!*Stream {
        return self.streams.get(id) orelse diag.fail(.BADF, "stream {d} is not open", .{id});
    }

    // Stream commands, run through `with_stream`.

    fn data_of(stream: *Stream) Fail!*Data {
        return switch (stream.body) {
            .data => |*data| data,
            .control => diag.fail(.INVAL, "stream {d} is a control channel", .{stream.id}),
        };
    }

    /// Hands local fds to a data stream; the pump owns (and finally closes) them.
    pub fn set_stdio(
        stream: *Stream,
        stdin_fd: i32,
        stdout_fd: i32,
        stderr_fd: i32,
        has_child: bool,
    ) Fail!void {
        const data = try data_of(stream);
        data.set_fds(stdin_fd, stdout_fd, stderr_fd, has_child);
        if (data.sockets == .requested) data.enter_single_socket();
    }

    /// A client's remote stderr goes to `fd` instead of our fd 2; the pump owns it from now on.
    pub fn set_remote_stderr(stream: *Stream, fd: i32) Fail!void {
        const data = try data_of(stream);
        if (data.is_service) return diag.fail(
            .INVAL,
            "stream {d} is a service's: its stderr is local",
            .{stream.id},
        );
        if (data.remote_stderr_fd > 2) sys.close(data.remote_stderr_fd);
        data.remote_stderr_fd = fd;
    }

    /// Creates a service's stdio as upstream does (§5.5): socketpairs for stdin and stdout, a
    /// pipe for stderr unless it stays out of the call (dom0 services log it; the stream then
    /// sends stderr EOF at once). The pump keeps its ends; the child's are returned (-1: none).
    /// `stdout_pipe` (an option, not upstream's way) makes stdout a pipe: a unix socket costs
    /// far more per write than a pipe, and a service that writes its output in small pieces
    /// (`head`, 8 KiB) is limited by that hop (docs/benchmarks.md). Stdin stays a socket, so
    /// SIGUSR1's single-socket mode (§6.6) works the same; what a pipe takes away is the
    /// socket calls on fd 1 (a service's `shutdown(1, SHUT_WR)` fails with ENOTSOCK).
    pub fn make_service_stdio(stream: *Stream, with_stderr: bool, stdout_pipe: bool) Fail![3]i32 {
        const data = try data_of(stream);
        var stdin_pair: [2]i32 = undefined;
        var stdout_pair: [2]i32 = undefined;
        var stderr_pipe: [2]i32 = .{ -1, -1 };
        _ = try sys.check(
            linux.socketpair(linux.AF.UNIX, linux.SOCK.STREAM | linux.SOCK.CLOEXEC, 0, &stdin_pair),
            "socketpair",
        );
        errdefer for (stdin_pair) |fd| sys.close(fd);
        if (stdout_pipe) {
            _ = try sys.check(linux.pipe2(&stdout_pair, .{ .CLOEXEC = true }), "pipe2");
        } else {
            _ = try sys.check(
                linux.socketpair(
                    linux.AF.UNIX,
                    linux.SOCK.STREAM | linux.SOCK.CLOEXEC,
                    0,
                    &stdout_pair,
                ),
                "socketpair",
            );
        }
        errdefer for (stdout_pair) |fd| sys.close(fd);
        if (with_stderr) _ = try sys.check(
            linux.pipe2(&stderr_pipe, .{ .CLOEXEC = true }),
            "pipe2",
        );
        data.set_fds(stdin_pair[0], stdout_pair[0], stderr_pipe[0], true);
        return .{ stdin_pair[1], stdout_pair[1], stderr_pipe[1] };
    }

    /// The service `attach` was given, checked: the pump starts it once the data vchan is
    /// connected and HELLOs are exchanged, with stdio from `make_service_stdio(with_stderr,
    /// stdout_pipe)`; it reports `spawned` (pid or -errno), owns the child and reaps it.
    fn spawn_spec(stream: *Stream, request: SpawnRequest) Fail!*spawn_mod.Spec {
        if (stream.kind != .data_service) return diag.fail(
            .INVAL,
            "only a service stream starts a service",
            .{},
        );
        return spawn_mod.Spec.init(
            stream.allocator,
            request.strings,
            request.argc,
            request.with_stderr,
            request.stdout_pipe,
        );
    }

    pub fn set_prefix(stream: *Stream, bytes: []const u8) Fail!void {
        const data = try data_of(stream);
        if (data.prefix.len > 0) return diag.fail(.INVAL, "prefix data was already given", .{});
        data.prefix = stream.allocator.dupe(u8, bytes) catch return diag.fail(
            .NOMEM,
            "out of memory",
            .{},
        );
    }

    /// The stream is a hosted call's: `connection`'s front end hears its exit status from the
    /// pump thread (`owe_reply`).
    pub fn reply_when_done(stream: *Stream, connection: u32) Fail!void {
        _ = try data_of(stream);
        stream.reply_to = connection;
    }

    pub fn local_exit(stream: *Stream, status: i32) Fail!void {
        const data = try data_of(stream);
        data.on_local_exit(status);
    }

    pub fn finish_with(stream: *Stream, status: i32, eofs: bool) Fail!void {
        const data = try data_of(stream);
        if (!data.is_service) return diag.fail(
            .INVAL,
            "only a service side sends an exit code",
            .{},
        );
        data.finish_with(status, eofs);
    }

    pub fn single_socket(stream: *Stream) Fail!void {
        const data = try data_of(stream);
        data.enter_single_socket();
    }

    /// The front end of a stream with `Flags.front_end_signals` has sent every SIGUSR1 it got
    /// before it answered `front_end_sync` (or is gone): a held stdout EOF may go now.
    pub fn front_end_synced(stream: *Stream) Fail!void {
        _ = try data_of(stream);
        stream.front_end_sync = .answered;
    }

    /// What a live stream's vchan moved so far and its ring sizes (`qp_stream_traffic`): the
    /// numbers `qrx lab top` shows. A finished stream has left its vchan: ENOTCONN.
    pub fn traffic(stream: *Stream) Fail!Traffic {
        if (stream.vchan_closed) {
            return diag.fail(.NOTCONN, "stream {d} has left its vchan", .{stream.id});
        }
        const stats = stream.vchan.stats();
        return .{
            .bytes_read = stats.bytes_read,
            .bytes_written = stats.bytes_written,
            .read_ring_bytes = stream.vchan.read_ring_bytes(),
            .write_ring_bytes = stream.vchan.write_ring_bytes(),
        };
    }

    pub fn set_child(self: *Pump, id: u32, pid: i32) Fail!void {
        self.mutex.lock();
        defer self.mutex.unlock();
        const stream = try self.open_stream(id);
        const data = try data_of(stream);
        stream.child_pid = pid;
        // Still unreaped: JS names the child in the turn that spawned it, and Bun reaps on
        // that same thread later. Without a pidfd, JS's `local_exit` still brings the status.
        if (data.is_service and stream.child_pidfd < 0 and data.local_status == null) {
            const opened = linux.pidfd_open(pid, 0);
            if (sys.errno_of(opened) == .SUCCESS) stream.child_pidfd = @intCast(opened);
        }
        // A stream holding its child's stdout EOF for this (`settle_held_eof`) looks again.
        self.wake();
        var index: u32 = 0;
        while (index < self.unclaimed_count) {
            if (sender_descends_from(self.unclaimed[index], pid)) {
                data.request_single_socket();
                self.unclaimed_count -= 1;
                self.unclaimed[index] = self.unclaimed[self.unclaimed_count];
                self.wake();
            } else index += 1;
        }
    }

    /// Installs the SIGUSR1 handler and has the pump thread act on the signals itself.
    pub fn watch_sigusr1(self: *Pump, mode: Sigusr1Mode) Fail!void {
        const fd = try signals.install_sigusr1();
        self.mutex.lock();
        defer self.mutex.unlock();
        self.sigusr1_fd = fd;
        self.sigusr1_mode = mode;
        self.wake();
    }

    /// Queues a control message and, on a running shm channel, writes it into the ring from the
    /// calling thread: the peer hears of it without waiting for the pump thread to be scheduled
    /// (a wake-up per message on the critical path of every call's set-up). The pump thread is
    /// woken only for what is left: a full ring, an error, or a socket vchan (whose unsent bytes
    /// need the pump to poll for room).
    pub fn send(self: *Pump, id: u32, msg_type: u32, body: []const u8) Fail!void {
        self.mutex.lock();
        defer self.mutex.unlock();
        const stream = try self.open_stream(id);
        send_message(stream, msg_type, body) catch |err| {
            self.wake();
            return err;
        };
        const control = &stream.body.control;
        if (stream.phase != .running or stream.vchan.* != .shm) return self.wake();
        // A failed write stays queued; the pump thread's own flush then finds the lost peer.
        control.flush() catch return self.wake();
        if (control.has_outgoing()) self.wake();
    }

    /// Queues a control message; it must fit the peer's ring whole.
    fn send_message(stream: *Stream, msg_type: u32, body: []const u8) Fail!void {
        const control = switch (stream.body) {
            .control => |*control| control,
            .data => return diag.fail(.INVAL, "stream {d} is a data channel", .{stream.id}),
        };
        if (stream.phase == .finished or stream.phase == .flushing) return diag.fail(
            .PIPE,
            "control channel {d} is closed",
            .{stream.id},
        );
        if (stream.phase == .connecting) return diag.fail(
            .NOTCONN,
            "control channel {d} is not connected yet",
            .{stream.id},
        );
        const ring_bytes = stream.vchan.write_ring_bytes();
        control.queue(msg_type, body, ring_bytes) catch |err| switch (err) {
            error.TooLarge => return diag.fail(
                .MSGSIZE,
                "control message of {d} bytes does not fit the peer's {d}-byte ring " ++
                    "(at most {d} bytes of body)",
                .{ body.len, ring_bytes, ring_bytes - protocol.header_bytes },
            ),
            // The pump thread fails the channel (`step_control`); `with_stream` wakes it.
            error.Unread => {
                const limit = control_mod.outgoing_bytes_max;
                const format = "control channel {d}: " ++ slow_peer_reason;
                return diag.fail(.NOBUFS, format, .{ stream.id, control.unsent_bytes(), limit });
            },
            error.OutOfMemory => return diag.fail(.NOMEM, "out of memory", .{}),
        };
    }

    pub fn close(self: *Pump, id: u32) Fail!void {
        const stream = stream: {
            self.mutex.lock();
            defer self.mutex.unlock();
            const removed = self.streams.remove(id) orelse return diag.fail(
                .BADF,
                "stream {d} is not open",
                .{id},
            );
            self.forget(removed);
            if (removed.owns_child and removed.child_pidfd >= 0) {
                // A service outliving its stream (its caller left) still gets reaped.
                self.orphans.append(self.allocator, removed.child_pidfd) catch {
                    _ = linux.pidfd_send_signal(removed.child_pidfd, linux.SIG.KILL, null, 0);
                    var info: linux.siginfo_t = undefined;
                    _ = linux.waitid(.PIDFD, removed.child_pidfd, &info, linux.W.EXITED);
                    sys.close(removed.child_pidfd);
                };
                removed.child_pidfd = -1;
            }
            break :stream removed;
        };
        // Outside the lock: closing a socket vchan may linger until its peer reads, and the
        // peer may be another stream of this very pump.
        self.release(stream);
        self.wake();
    }

    /// Drops `stream` from the live list (caller holds the lock).
    fn forget(self: *Pump, stream: *Stream) void {
        for (self.live[0..self.live_count], 0..) |candidate, index| {
            if (candidate != stream) continue;
            self.live_count -= 1;
            self.live[index] = self.live[self.live_count];
            return;
        }
        unreachable;
    }

    fn live_streams(self: *Pump) []*Stream {
        return self.live[0..self.live_count];
    }

    pub fn drain_events(self: *Pump, out: []u8) u32 {
        self.mutex.lock();
        defer self.mutex.unlock();
        const was_congested = self.queue.congested();
        const drained = self.queue.drain(out);
        // Control messages left in their rings can be cut again.
        if (was_congested and !self.queue.congested()) self.wake();
        return drained;
    }

    pub fn pending_event_bytes(self: *Pump) u32 {
        self.mutex.lock();
        defer self.mutex.unlock();
        return self.queue.pending_record_bytes();
    }

    fn release(self: *Pump, stream: *Stream) void {
        switch (stream.body) {
            .control => |*control| control.deinit(),
            .data => |*data| {
                data.close_all();
                if (data.prefix.len > 0) self.allocator.free(data.prefix);
            },
        }
        if (!stream.vchan_closed) close_vchan(self.allocator, stream.vchan);
        if (stream.child_pidfd >= 0) sys.close(stream.child_pidfd);
        if (stream.spawn) |spec| spec.deinit(stream.allocator);
        if (stream.buffers) |buffers| self.allocator.free(buffers);
        self.allocator.destroy(stream);
    }

    // ------------------------------------------------------------ the loop (pump thread)

    fn run(self: *Pump) void {
        // Signals belong to Bun's threads; the pump never handles one.
        var all: linux.sigset_t = undefined;
        @memset(std.mem.asBytes(&all), 0xff);
        _ = linux.sigprocmask(linux.SIG.BLOCK, &all, null);
        self.mutex.lock();
        var replies: std.ArrayListUnmanaged(OwedReply) = .{};
        defer replies.deinit(self.allocator);
        while (!self.stopping) {
            const count = self.build_poll_set();
            const timeout_ms = self.poll_timeout();
            std.mem.swap(std.ArrayListUnmanaged(OwedReply), &replies, &self.owed_replies);
            self.mutex.unlock();
            for (replies.items) |owed| self.reply_hook.?(owed.connection, owed.status);
            replies.clearRetainingCapacity();
            _ = linux.poll(&self.pollfds, count, timeout_ms);
            self.mutex.lock();
            self.dispatch(count);
        }
        self.mutex.unlock();
    }

    fn add_poll(
        self: *Pump,
        count: *u32,
        fd: i32,
        interest: i16,
        stream: ?*Stream,
        which: Which,
    ) void {
        assert(count.* < pollfds_max);
        self.pollfds[count.*] = .{ .fd = fd, .events = interest, .revents = 0 };
        self.owners[count.*] = .{
            .stream_id = if (stream) |known| known.id else 0,
            .which = which,
        };
        count.* += 1;
    }

    fn build_poll_set(self: *Pump) u32 {
        var count: u32 = 0;
        self.add_poll(&count, self.wake_fd, linux.POLL.IN, null, .vchan0);
        if (self.sigusr1_fd >= 0) self.add_poll(
            &count,
            self.sigusr1_fd,
            linux.POLL.IN,
            null,
            .vchan1,
        );
        const orphans_polled = @min(self.orphans.items.len, orphans_polled_max);
        for (self.orphans.items[0..orphans_polled]) |pidfd| {
            self.add_poll(&count, pidfd, linux.POLL.IN, null, .child);
        }
        for (self.live_streams()) |stream| {
            if (stream.phase == .finished) continue;
            var fds: [2]i32 = undefined;
            const vchan_fds = stream.vchan.poll_fds(&fds);
            const vchan_events = stream.vchan.poll_events();
            stream.vchan_fds = @intCast(vchan_fds.len);
            for (vchan_fds, 0..) |fd, index| self.add_poll(
                &count,
                fd,
                vchan_events[index],
                stream,
                if (index == 0) .vchan0 else .vchan1,
            );
            if (stream.phase != .running) continue;
            switch (stream.body) {
                .control => {},
                .data => |*data| {
                    const interest = data.interest();
                    if (data.stdin_fd >= 0) self.add_poll(
                        &count,
                        data.stdin_fd,
                        interest.stdin,
                        stream,
                        .stdin,
                    );
                    if (data.stdout_fd >= 0 and interest.stdout != 0) self.add_poll(
                        &count,
                        data.stdout_fd,
                        interest.stdout,
                        stream,
                        .stdout,
                    );
                    if (data.stderr_fd >= 0 and interest.stderr != 0) self.add_poll(
                        &count,
                        data.stderr_fd,
                        interest.stderr,
                        stream,
                        .stderr,
                    );
                    if (stream.child_pidfd >= 0) self.add_poll(
                        &count,
                        stream.child_pidfd,
                        linux.POLL.IN,
                        stream,
                        .child,
                    );
                },
            }
        }
        return count;
    }

    /// 0 when some stream can make progress without waiting; else the nearest connect deadline.
    fn poll_timeout(self: *Pump) i32 {
        var timeout_ms: i32 = -1;
        const now = sys.now_ns();
        for (self.live_streams()) |stream| {
            switch (stream.phase) {
                .finished => continue,
                .connecting, .hello, .flushing => {
                    // A socket vchan moves input into its ring whenever it is asked its state;
                    // its fd does not fire again for bytes it already took.
                    const hello_waiting = stream.vchan.data_ready() >= protocol.hello_bytes;
                    if (stream.phase == .hello and hello_waiting) return 0;
                    if (stream.phase == .flushing and stream.vchan.data_ready() > 0) return 0;
                    if (stream.deadline_ns != 0) {
                        const left_ms = sys.ms_until(stream.deadline_ns, now);
                        if (timeout_ms < 0 or left_ms < timeout_ms) timeout_ms = left_ms;
                    }
                },
                .running => switch (stream.body) {
                    .control => |*control| {
                        const ready = stream.vchan.data_ready() >= protocol.header_bytes;
                        const readable = ready and !self.queue.congested();
                        if (readable or control.overflowed or
                            (control.has_outgoing() and stream.vchan.buffer_space() > 0)) return 0;
                    },
                    .data => |*data| {
                        if (data.interest().immediate) return 0;
                        // A held stdout EOF (`settle_held_eof`) is re-examined when a record or
                        // `set_child` wakes us, and at the latest when the hold runs out.
                        if (data.stdout_eof_held_until()) |until| {
                            const left_ms = sys.ms_until(until, now);
                            if (timeout_ms < 0 or left_ms < timeout_ms) timeout_ms = left_ms;
                        }
                    },
                },
            }
        }
        return timeout_ms;
    }

    fn dispatch(self: *Pump, count: u32) void {
        for (self.live_streams()) |stream| {
            stream.revents_vchan = .{ 0, 0 };
            stream.revents_stdin = 0;
            stream.revents_stdout = 0;
            stream.revents_stderr = 0;
            stream.revents_child = 0;
        }
        var index: u32 = 0;
        while (index < count) : (index += 1) {
            const revents = self.pollfds[index].revents;
            const owner = self.owners[index];
            if (owner.stream_id == 0) {
                if (revents == 0) continue;
                if (owner.which == .vchan1) {
                    self.take_sigusr1();
                    continue;
                }
                if (owner.which == .child) continue;
                // One read resets the eventfd.
                var counter: u64 = 0;
                _ = linux.read(self.wake_fd, std.mem.asBytes(&counter), 8);
                continue;
            }
            // A stream closed by JS while we polled is no longer in the table.
            const stream = self.streams.get(owner.stream_id) orelse continue;
            switch (owner.which) {
                .vchan0 => stream.revents_vchan[0] = revents,
                .vchan1 => stream.revents_vchan[1] = revents,
                .stdin => stream.revents_stdin = revents,
                .stdout => stream.revents_stdout = revents,
                .stderr => stream.revents_stderr = revents,
                .child => stream.revents_child = revents,
            }
        }
        for (self.live_streams()) |stream| {
            if (stream.phase != .finished) self.step(stream);
        }
        if (self.orphans.items.len > 0) self.reap_orphans();
    }

    /// Applies queued SIGUSR1s before any stream steps, so a service that signalled and then
    /// exited has its stdin socket read before its stdout EOF could end the stream.
    fn take_sigusr1(self: *Pump) void {
        var records: [16]signals.Record = undefined;
        while (true) {
            const count = signals.read_senders(self.sigusr1_fd, &records);
            for (records[0..count]) |record| self.apply_sigusr1(record);
            if (count < records.len) return;
        }
    }

    /// A child's stdout reached EOF while a SIGUSR1 could still switch its stream (§6.6). A
    /// child that signals before it closes its stdout has, by the time we see that EOF, a
    /// signal that is either still pending (taken here, by this thread, which blocks it), in
    /// a handler on another thread (its record is on the way: the pipe wakes us), or in the
    /// pipe (taken here). Only then is the EOF acted on, so a child that signals, writes to fd
    /// 0 and exits never loses that output. Held longer, up to `stdout_eof_hold_ns`: while JS
    /// has not named the child yet (`set_child` wakes us), and while the child's writes to fd 0
    /// wait unread with no record for them yet, which covers the kernel's short hand-over of a
    /// signal to a thread that has not entered the handler yet.
    fn settle_held_eof(self: *Pump, stream: *Stream, data: *Data) void {
        self.take_sigusr1();
        var records: [4]signals.Record = undefined;
        for (records[0..signals.take_pending(&records)]) |record| self.apply_sigusr1(record);
        // A record for this stream switched it; the held EOF went with the old stdout.
        const until = data.stdout_eof_held_until() orelse return;
        // A hosted local program signals its front end, whose byte comes through JS: the
        // front end, asked once, answers after every signal it got (zig/client_host/wire.zig).
        const via_front_end = data.flags.front_end_signals and stream.front_end_sync != .answered;
        if (via_front_end and stream.front_end_sync == .none) {
            stream.front_end_sync = .asked;
            self.queue.push(stream.id, .front_end_sync, 0, "");
        }
        const may_come = signals.handlers_running() or via_front_end or
            (self.sigusr1_mode == .by_child and stream.child_pid == 0) or
            data.child_wrote_to_stdin_socket();
        if (may_come and sys.now_ns() < until) return;
        data.release_stdout_eof();
    }

    fn apply_sigusr1(self: *Pump, record: signals.Record) void {
        var applied = false;
        for (self.live_streams()) |stream| {
            const data = switch (stream.body) {
                .data => |*data| data,
                .control => continue,
            };
            switch (stream.phase) {
                .running, .hello, .connecting => {},
                else => continue,
            }
            const matches = switch (self.sigusr1_mode) {
                .off => false,
                .any => true,
                .by_child => stream.child_pid > 0 and sender_descends_from(
                    record,
                    stream.child_pid,
                ),
            };
            if (!matches) continue;
            data.request_single_socket();
            applied = true;
            if (self.sigusr1_mode == .by_child) return;
        }
        if (!applied and self.sigusr1_mode == .any) self.sigusr1_pending = true;
        if (!applied and self.sigusr1_mode == .by_child) {
            // Oldest dropped first: a stray signal must not pin the table.
            if (self.unclaimed_count == self.unclaimed.len) {
                std.mem.copyForwards(
                    signals.Record,
                    self.unclaimed[0 .. self.unclaimed.len - 1],
                    self.unclaimed[1..],
                );
                self.unclaimed_count -= 1;
            }
            self.unclaimed[self.unclaimed_count] = record;
            self.unclaimed_count += 1;
        }
    }

    fn step(self: *Pump, stream: *Stream) void {
        // `vchan_fds` is 0 for a stream that was not in this round's poll set (attached, or
        // finished, meanwhile).
        if (stream.vchan_fds > 0) {
            // A vchan that fails here is left disconnected with its reason: the steps report it.
            stream.vchan.on_poll(stream.revents_vchan[0..stream.vchan_fds]) catch {};
            stream.vchan_fds = 0;
        }
        if (stream.phase == .flushing) return self.step_flush(stream);
        if (stream.phase == .connecting) self.step_connect(stream);
        if (stream.phase == .hello) self.step_hello(stream);
        if (stream.phase == .running) switch (stream.body) {
            .control => |*control| self.step_control(stream, control),
            .data => |*data| {
                if (stream.revents_child != 0) take_child_exit(stream, data);
                data.hold_stdout_eof = self.sigusr1_mode != .off and data.has_child;
                data.step(stream.revents_stdin, stream.revents_stdout, stream.revents_stderr);
                if (data.stdout == .eof_held) self.settle_held_eof(stream, data);
                if (data.outcome()) |outcome| switch (outcome) {
                    // The payload: when the pump reached each stage, for the timing trace.
                    .done => |status| {
                        self.finish(stream, .done, status, std.mem.asBytes(&data.marks));
                    },
                    .failed => |failure| self.finish(
                        stream,
                        .failed,
                        -@as(i32, @intCast(@intFromEnum(failure.errno))),
                        failure.message,
                    ),
                };
            },
        };
    }

    /// A service's exit, read from its pidfd, so the exit code goes out without waiting for JS
    /// to hear of it. A child Bun spawned is not reaped (WNOWAIT: Bun's own wait still reaps it,
    /// and JS's `local_exit` then finds the status known); one of ours (`start_service`) is.
    fn take_child_exit(stream: *Stream, data: *Data) void {
        var info: linux.siginfo_t = undefined;
        info.fields.common.first.piduid.pid = 0;
        const keep: u32 = if (stream.owns_child) 0 else linux.W.NOWAIT;
        const flags = linux.W.EXITED | linux.W.NOHANG | keep;
        const waited = sys.errno_of(linux.waitid(.PIDFD, stream.child_pidfd, &info, flags));
        // Not exited after all (0 pid): polled again. Failed: JS brings the status of its own
        // child; nobody would bring ours', so the call ends as one whose status is lost (§8).
        const exited = waited == .SUCCESS and info.fields.common.first.piduid.pid != 0;
        if (waited == .SUCCESS and !exited) return;
        sys.close(stream.child_pidfd);
        stream.child_pidfd = -1;
        if (data.local_status != null) return;
        if (!exited) {
            if (stream.owns_child) data.on_local_exit(@intCast(protocol.exit_no_status));
            return;
        }
        const status = info.fields.common.second.sigchld.status;
        switch (info.code) {
            // As src/protocol/exit.ts's waitStatus: the code, or the base plus the signal (§8).
            CLD_EXITED => data.on_local_exit(status),
            CLD_KILLED, CLD_DUMPED => {
                data.on_local_exit(@as(i32, protocol.exit_signal_base) + status);
            },
            else => {},
        }
    }

    /// The stream's service, started as its caller is connected (as the JS path would
    /// after hearing of it). A failure ends the call as JS's does: both EOFs, then 127 for a
    /// missing program, else 125 (§5.5, §5.9).
    fn start_service(self: *Pump, stream: *Stream, data: *Data) void {
        const spec = stream.spawn.?;
        defer {
            spec.deinit(stream.allocator);
            stream.spawn = null;
        }
        const child = make_service_stdio(stream, spec.with_stderr, spec.stdout_pipe) catch {
            return self.spawn_failed(stream, data, @enumFromInt(diag.errno()));
        };
        defer for (child) |fd| if (fd >= 0) sys.close(fd);
        // The child is ours to reap, through a pidfd: an fd is kept back for it.
        const reserve = linux.fcntl(self.wake_fd, sys.F_DUPFD_CLOEXEC, 3);
        if (sys.errno_of(reserve) != .SUCCESS) return self.spawn_failed(stream, data, .MFILE);
        const started = spawn_mod.start(spec, child);
        sys.close(@intCast(reserve));
        const pid = switch (started) {
            .errno => |errno| return self.spawn_failed(stream, data, errno),
            .pid => |pid| pid,
        };
        const opened = linux.pidfd_open(pid, 0);
        if (sys.errno_of(opened) != .SUCCESS) {
            // Another thread took the kept fd: not left a zombie, nor running unwatched.
            _ = linux.kill(pid, linux.SIG.KILL);
            var status: u32 = 0;
            _ = linux.waitpid(pid, &status, 0);
            return self.spawn_failed(stream, data, .MFILE);
        }
        stream.child_pidfd = @intCast(opened);
        stream.child_pid = pid;
        stream.owns_child = true;
        const spawned_at = sys.realtime_ns();
        self.queue.push(stream.id, .spawned, pid, std.mem.asBytes(&spawned_at));
    }

    fn spawn_failed(self: *Pump, stream: *Stream, data: *Data, errno: linux.E) void {
        data.finish_with(if (errno == .NOENT) 127 else 125, true);
        self.queue.push(stream.id, .spawned, -@as(i32, @intFromEnum(errno)), "");
    }

    /// Reaps every orphan that has exited (see `orphans`).
    fn reap_orphans(self: *Pump) void {
        var index: usize = 0;
        while (index < self.orphans.items.len) {
            const pidfd = self.orphans.items[index];
            var info: linux.siginfo_t = undefined;
            info.fields.common.first.piduid.pid = 0;
            const flags = linux.W.EXITED | linux.W.NOHANG;
            const waited = sys.errno_of(linux.waitid(.PIDFD, pidfd, &info, flags));
            if (waited == .SUCCESS and info.fields.common.first.piduid.pid == 0) {
                index += 1;
                continue;
            }
            sys.close(pidfd);
            _ = self.orphans.swapRemove(index);
        }
    }

    fn step_connect(self: *Pump, stream: *Stream) void {
        assert(stream.phase == .connecting);
        const vchan = stream.vchan;
        // A waiting server's HELLO is there when the client maps the rings, and the client's
        // side (a service, about to be started) connects in that same step instead of waiting
        // a round trip for it.
        const early = stream.send_first and !stream.hello_sent and
            vchan.waiting_space() >= protocol.hello_bytes;
        if (early) {
            if (!send_hello(vchan, stream.own_version)) return self.lost_peer(stream);
            stream.hello_sent = true;
        }
        const connected = switch (vchan.role()) {
            .client => (vchan.finish() catch return self.fail_from_diag(stream)) == 0,
            // A client that found our early HELLO may have connected, said all it had to say
            // and left before we looked: what it wrote is read as from any peer that left.
            .server => vchan.state() == .connected or vchan.peek_data_ready() > 0,
        };
        if (connected) {
            stream.phase = .hello;
            return;
        }
        if (vchan.state() == .disconnected) {
            var buffer: [240]u8 = undefined;
            const why = vchan.reason();
            const left = "vchan peer left before the connection was made";
            const message = if (why.len == 0)
                left
            else
                std.fmt.bufPrint(&buffer, left ++ ": {s}", .{why}) catch left;
            return self.finish(stream, .failed, -@as(i32, @intFromEnum(linux.E.PIPE)), message);
        }
        if (stream.deadline_ns != 0 and sys.now_ns() >= stream.deadline_ns) {
            var buffer: [160]u8 = undefined;
            const message = std.fmt.bufPrint(
                &buffer,
                "vchan to domain {d} port {d}: no connection within the timeout",
                .{ vchan.remote_domain(), vchan.port() },
            ) catch "vchan connection timed out";
            self.finish(stream, .failed, -@as(i32, @intFromEnum(linux.E.TIMEDOUT)), message);
        }
    }

    fn step_hello(self: *Pump, stream: *Stream) void {
        assert(stream.phase == .hello);
        const vchan = stream.vchan;
        if (stream.send_first and !stream.hello_sent) {
            if (!send_hello(vchan, stream.own_version)) return self.lost_peer(stream);
            stream.hello_sent = true;
        }
        if (stream.peer_version == null) {
            // State before data: asking the state may bring in the HELLO (socket backend).
            const open = vchan.state() != .disconnected;
            if (vchan.data_ready() < protocol.hello_bytes) {
                if (!open) return self.lost_peer(stream);
                if (stream.deadline_ns != 0 and sys.now_ns() >= stream.deadline_ns) {
                    return self.finish(
                        stream,
                        .failed,
                        -@as(i32, @intFromEnum(linux.E.TIMEDOUT)),
                        "peer sent no HELLO within the timeout",
                    );
                }
                return;
            }
            var raw: [protocol.hello_bytes]u8 = undefined;
            _ = vchan.recv(&raw) catch return self.fail_from_diag(stream);
            stream.peer_version = switch (protocol.decode_hello(raw)) {
                .version => |version| version,
                .not_hello => |header| return self.fail_protocol(
                    stream,
                    "expected HELLO, got type 0x{x} length {d}",
                    .{ header.type, header.len },
                ),
                .too_old => |version| return self.fail_protocol(
                    stream,
                    "peer speaks qrexec protocol {d}, at least {d} is needed",
                    .{ version, protocol.version_min },
                ),
            };
        }
        stream.version = @min(stream.own_version, stream.peer_version.?);
        if (!stream.hello_sent) {
            if (!send_hello(vchan, stream.version)) return self.lost_peer(stream);
            stream.hello_sent = true;
        }
        assert(stream.hello_sent and stream.version <= stream.own_version);
        stream.phase = .running;
        // For the timing trace: when the pump got there, not when JS heard of it.
        const connected_at = sys.realtime_ns();
        switch (stream.body) {
            .control => {},
            .data => |*data| {
                data.start(stream.version);
                if (stream.spawn != null) self.start_service(stream, data);
            },
        }
        const version: i32 = @intCast(stream.version);
        self.queue.push(stream.id, .connected, version, std.mem.asBytes(&connected_at));
    }

    fn step_control(self: *Pump, stream: *Stream, control: *Control) void {
        if (control.overflowed) {
            var buffer: [160]u8 = undefined;
            const limit = control_mod.outgoing_bytes_max;
            const unsent = control.unsent_bytes();
            const arguments = .{ unsent, limit };
            const message = std.fmt.bufPrint(
                &buffer,
                slow_peer_reason,
                arguments,
            ) catch unreachable;
            return self.finish(stream, .failed, -@as(i32, @intFromEnum(linux.E.NOBUFS)), message);
        }
        control.flush() catch return self.lost_peer(stream);
        var rounds: u32 = 0;
        while (rounds < 64 and !self.queue.congested()) : (rounds += 1) {
            const received = control.receive(
                protocol.control_body_bytes_max,
            ) catch |err| switch (err) {
                error.MessageTooLarge => return self.fail_protocol(
                    stream,
                    "control message longer than any valid one",
                    .{},
                ),
                error.OutOfMemory => return self.finish(
                    stream,
                    .failed,
                    -@as(i32, @intFromEnum(linux.E.NOMEM)),
                    "out of memory",
                ),
                error.Fail => return self.fail_from_diag(stream),
            } orelse break;
            self.queue.push(stream.id, .message, @bitCast(received.type), received.body);
        }
        // Stepped on every wakeup of the pump: the syscall-free state (see `state_polled`).
        const drained = stream.vchan.data_ready() == 0;
        if (stream.vchan.state_polled() == .disconnected and drained) self.lost_peer(stream);
    }

    fn lost_peer(self: *Pump, stream: *Stream) void {
        var buffer: [240]u8 = undefined;
        const reason = stream.vchan.reason();
        const message = std.fmt.bufPrint(
            &buffer,
            "vchan closed: {s}",
            .{if (reason.len > 0) reason else "the peer left"},
        ) catch "vchan closed";
        self.finish(stream, .failed, -@as(i32, @intFromEnum(linux.E.PIPE)), message);
    }

    fn fail_from_diag(self: *Pump, stream: *Stream) void {
        self.finish(stream, .failed, -diag.errno(), diag.message());
    }

    /// Ends `stream` for something its peer sent that the protocol does not allow (EPROTO).
    fn fail_protocol(
        self: *Pump,
        stream: *Stream,
        comptime format: []const u8,
        args: anytype,
    ) void {
        var buffer: [160]u8 = undefined;
        const message = std.fmt.bufPrint(&buffer, "peer protocol error: " ++ format, args) catch
            unreachable;
        self.finish(stream, .failed, -@as(i32, @intFromEnum(linux.E.PROTO)), message);
    }

    fn finish(
        self: *Pump,
        stream: *Stream,
        kind: events.Kind,
        value: i32,
        message: []const u8,
    ) void {
        assert(stream.phase != .finished and stream.phase != .flushing);
        if (stream.vchan.unsent_bytes() == 0) return self.leave(stream, kind, value, message);
        // A socket vchan still holds bytes the kernel has not taken (the exit code, say). Its
        // close would block this thread until the peer read them, and the peer may be a stream
        // of this pump: so flush from the poll loop first, and report once that is done.
        const length = @min(message.len, stream.outcome_buffer.len);
        @memcpy(stream.outcome_buffer[0..length], message[0..length]);
        stream.outcome = .{ .kind = kind, .value = value, .message_len = @intCast(length) };
        stream.phase = .flushing;
        stream.deadline_ns = sys.now_ns() + flush_timeout_ms * std.time.ns_per_ms;
    }

    fn step_flush(self: *Pump, stream: *Stream) void {
        // Nobody reads any more; dropping input keeps a peer that is blocked sending to us
        // reading what we flush.
        var sink: [4096]u8 = undefined;
        var rounds: u32 = 0;
        while (rounds < 64 and stream.vchan.data_ready() > 0) : (rounds += 1) {
            _ = stream.vchan.read(&sink) catch break;
        }
        if (stream.vchan.unsent_bytes() > 0 and sys.now_ns() < stream.deadline_ns) return;
        const outcome = stream.outcome;
        self.leave(
            stream,
            outcome.kind,
            outcome.value,
            stream.outcome_buffer[0..outcome.message_len],
        );
    }

    fn leave(
        self: *Pump,
        stream: *Stream,
        kind: events.Kind,
        value: i32,
        message: []const u8,
    ) void {
        assert(stream.phase != .finished and !stream.vchan_closed);
        stream.phase = .finished;
        // Leave the vchan now, so the peer sees the end without waiting for JS to close us.
        close_vchan(self.allocator, stream.vchan);
        stream.vchan_closed = true;
        const kept = message[0..@min(message.len, outcome_message_bytes_max)];
        self.queue.push(stream.id, kind, value, kept);
        if (kind == .done and value != -1) self.owe_reply(stream, value);
    }

    /// A hosted call that ended with the remote's status: its front end is told from here, a
    /// wake-up of JS sooner (JS's own answer, later, finds the front end answered). A call
    /// without that status (a vchan closed early), or whose local program is still running (a
    /// peer that left first ends the stream before it), is JS's to word and answer.
    fn owe_reply(self: *Pump, stream: *Stream, remote: i32) void {
        const connection = stream.reply_to orelse return;
        const data = switch (stream.body) {
            .data => |*data| data,
            .control => return,
        };
        if (data.is_service or self.reply_hook == null) return;
        if (data.has_child and data.local_status == null) return;
        const status = client_exit_status(remote, data.local_status);
        const owed: OwedReply = .{ .connection = connection, .status = status };
        // Out of memory, JS answers as before.
        self.owed_replies.append(self.allocator, owed) catch return;
        self.wake();
    }
};

fn send_hello(vchan: *Vchan, version: u32) bool {
    const message = protocol.encode_hello(version);
    const sent = vchan.send(&message) catch return false;
    // A fresh ring always has room for 12 bytes; 0 would mean a peer that filled it first.
    return sent == message.len;
}

fn close_vchan(allocator: std.mem.Allocator, vchan: *Vchan) void {
    vchan.close();
    allocator.destroy(vchan);
}

/// Whether the record's sender (or an ancestor it listed) is `pid`; past the recorded chain,
/// /proc is asked about the oldest ancestor the handler saw (alive or a zombie by now).
fn sender_descends_from(record: signals.Record, pid: i32) bool {
    var oldest: i32 = 0;
    for (record) |each| {
        if (each <= 0) break;
        if (each == pid) return true;
        oldest = each;
    }
    return oldest > 0 and signals.is_same_or_descendant(oldest, pid);
}

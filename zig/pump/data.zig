//! One qrexec data channel: the loop of upstream's `qrexec_process_io` (qrexec-protocol.md §6.2)
//! as an explicit, non-blocking state machine that the pump thread steps whenever one of the
//! stream's fds or its vchan may have work.
//!
//! Naming follows upstream: `stdin_fd` is where remote data is written (the service's stdin, or
//! a client's local output), `stdout_fd` is where local data is read (the service's stdout, or a
//! client's local input), `stderr_fd` is the service's stderr (-1 on clients, socket and dom0
//! services).
//!
//! Flow control (§6.8): a local write never blocks; what does not fit stays in `backlog`, and
//! while the backlog is non-empty nothing more is taken from the vchan, so the peer is throttled
//! by the full ring. Local data is read only when the ring has room for a header and a chunk, and
//! every chunk is sized to fit, so a vchan write never blocks either.
const std = @import("std");
const linux = std.os.linux;
const assert = std.debug.assert;

const diag = @import("../diag.zig");
const protocol = @import("../protocol.zig");
const MsgType = protocol.MsgType;
const sys = @import("../sys.zig");
const Vchan = @import("../vchan/vchan.zig").Vchan;
const State = @import("../constants.zig").State;

pub const Flags = packed struct(u32) {
    /// -t: replace unsafe bytes in remote stdout written locally.
    filter_stdout: bool = false,
    /// -T: the same for remote stderr.
    filter_stderr: bool = false,
    exit_on_client_eof: bool = false,
    exit_on_service_eof: bool = false,
    /// The service side of a mirage-qubes 2.0 peer (qrexec-protocol.md §14; the agent's
    /// `--peer-profile=mirage`): no stderr EOF ever, stdout EOF only at completion, right before
    /// the exit code, and any message but DATA_STDIN drops the vchan.
    mirage_service: bool = false,
    /// Reproduces mirage-qubes 2.0 bug 1 (§14): local data is sent as one "write" (everything
    /// read until EOF, or `mirage_write_bytes_max`), split into chunks whose headers each carry
    /// the total remaining length instead of the chunk's. A test knob (QRX_MIRAGE_BUGS).
    mirage_chunk_bug: bool = false,
    /// The service side has no stderr fd whatever happens (a dom0 service: its stderr stays in
    /// the log), so its stderr EOF comes first even when it fails before starting: STDERR(""),
    /// STDOUT(""), EXIT_CODE, as upstream's `handle_failed_exec` (an agent's failure sends
    /// stdout's EOF first, §5.9).
    stderr_eof_first: bool = false,
    /// The child is a hosted qrexec-client-vm call's local program, whose SIGUSR1 reaches us
    /// through its front end (zig/client_host): a held stdout EOF also waits for the front
    /// end's word that every signal it got is sent (pump.zig `settle_held_eof`). Not read here.
    front_end_signals: bool = false,
    _: u24 = 0,
};

/// The largest "write" the chunk-length bug gathers before it sends (see `Flags`).
pub const mirage_write_bytes_max: u32 = 1 << 20;

/// What a finished stream reports.
pub const Outcome = union(enum) {
    /// Service: the local status sent. Client: the remote status, -1 when none arrived.
    done: i32,
    /// A protocol violation or vchan failure; the message says which.
    failed: struct { errno: linux.E, message: []const u8 },
};

const MessageState = union(enum) {
    header,
    /// `remaining` body bytes of a data message of `type` are still in the vchan.
    body: struct { type: MsgType, remaining: u32 },

    fn of(msg_type: MsgType, remaining: u32) MessageState {
        return .{ .body = .{ .type = msg_type, .remaining = remaining } };
    }
};

/// Longest an EOF on a child's stdout is held for a SIGUSR1 that may still come (see
/// `Data.hold_stdout_eof`). Only reached when the child wrote to its stdin socket without a
/// signal arriving, or when a signal's record is stuck in a descheduled thread.
pub const stdout_eof_hold_ns: u64 = 1 * std.time.ns_per_s;

/// Stages of a call only the pump sees, timed for the trace (src/trace.ts `PUMP_STAGES`, same
/// order): the DONE record carries `marks` as its payload.
pub const Mark = enum(u3) {
    first_byte_sent,
    first_byte_received,
    eof_sent,
    eof_received,
    exit_sent,
    exit_received,
};

pub const mark_count = @typeInfo(Mark).@"enum".fields.len;

/// Where a data stream is in its life.
pub const Phase = union(enum) {
    /// JS has not said where local data goes (fds, or a forced finish): nothing runs, so a
    /// service is not reported finished before it was even spawned.
    awaiting_fds,
    running,
    /// Every fd is closed; nothing more is sent or received.
    done: Outcome,
};

/// Remote data written locally (`stdin_fd`).
pub const Stdin = enum {
    /// Written as remote data arrives.
    open,
    /// Took less than it was offered from the read ring, whose rest waits there (zero-copy
    /// path): the same flow control as a non-empty backlog, until `step` offers it again.
    full,
    /// No fd (or it was shut: see `saved_stdin_fd`); remote data is dropped.
    closed,
};

/// Local data read and sent (`stdout_fd`) and its EOF, which every path sends at most once:
///
///   open ──► eof_held ──► eof_after_gathered ──► eof_owed ──► eof_sent
///     └─────────┴──────────────────┴─────────────────┴──► closed ──► eof_owed / eof_sent
///
/// `closed` is "no fd, no EOF owed": none was given, the peer left, or the EOF is due later (a
/// mirage-qubes service sends it at completion; `finish_with` may owe it). A SIGUSR1 switch
/// moves `open`/`eof_held` back to `open` on the stdin socket.
pub const Stdout = union(enum) {
    /// `stdout_fd` is read (polled when the ring has room).
    open,
    /// `stdout_fd` reached EOF, which is neither acted on nor polled until the pump calls
    /// `release_stdout_eof`, a SIGUSR1 switches the stream, or this time (`sys.now_ns`)
    /// passes (see `hold_stdout_eof`).
    eof_held: u64,
    /// Closed at EOF; the gathered "write" (`Flags.mirage_chunk_bug`) goes out, then the EOF.
    eof_after_gathered,
    /// Closed; the EOF header waits for ring space.
    eof_owed,
    eof_sent,
    closed,

    fn reads_fd(self: Stdout) bool {
        return self == .open or self == .eof_held;
    }

    fn may_become(self: Stdout, next: Stdout) bool {
        if (std.meta.activeTag(self) == std.meta.activeTag(next)) return true;
        return switch (self) {
            .open, .eof_held => true,
            .eof_after_gathered => next == .eof_owed or next == .closed,
            .eof_owed => next == .eof_sent or next == .closed,
            .closed => next == .eof_owed or next == .eof_sent,
            .eof_sent => false,
        };
    }
};

/// The service's stderr (`stderr_fd`) and its EOF: open -> eof_owed -> eof_sent, or closed
/// without one (clients, mirage-qubes services, a departed peer); `finish_with` and a service
/// without a stderr fd owe it from `closed`.
pub const Stderr = enum {
    open,
    eof_owed,
    eof_sent,
    closed,

    fn may_become(self: Stderr, next: Stderr) bool {
        if (self == next) return true;
        return switch (self) {
            .open => next == .eof_owed or next == .closed,
            .eof_owed => next == .eof_sent or next == .closed,
            .closed => next == .eof_owed,
            .eof_sent => false,
        };
    }
};

/// Which owed EOF goes out first (§6.3). stderr's leads on a service that has no stderr fd
/// (§6.2 step 1, `Flags.stderr_eof_first`): then it is the first data message of all.
pub const EofOrder = enum { stdout_first, stderr_first };

/// A service's exit code: pending -> forced -> sent, sent exactly once and last.
pub const Exit = union(enum) {
    /// Sent with the local status once everything else is done (`finish`).
    pending,
    /// `finish_with`: sent with this status right after the owed EOFs, whatever is still open.
    forced: i32,
    /// On the wire with this status (or its send failed: nothing follows it either way).
    sent: i32,

    fn may_become(self: Exit, next: Exit) bool {
        return switch (self) {
            .pending, .forced => next != .pending,
            .sent => false,
        };
    }
};

/// SIGUSR1's single-socket mode (§6.6): the child writes its output to its stdin socket.
pub const Sockets = enum {
    separate,
    /// SIGUSR1 arrived before the fds were set: the pump switches as soon as they are.
    requested,
    single,
};

/// `Flags.mirage_chunk_bug`'s gathered "write": filled from `stdout_fd`, then sent whole.
pub const Gather = enum { filling, sending };

/// Data over the real vchan. The model test instantiates it over a fake one (`DataOver`).
pub const Data = DataOver(Vchan);

/// A data channel over any vchan type with the `Vchan` method set that data.zig uses; generic
/// at comptime so the pump's hot path calls the real vchan directly.
pub fn DataOver(comptime V: type) type {
    return struct {
        const Self = @This();

        vchan: *V,
        /// CLOCK_REALTIME ns at which each `Mark` was first reached (0: not reached); the clock
        /// JavaScript's `performance.timeOrigin + now()` counts on, so processes compare.
        marks: [mark_count]u64 = [_]u64{0} ** mark_count,
        is_service: bool,
        flags: Flags,
        max_chunk: u32 = protocol.max_data_chunk_v2,
        phase: Phase = .awaiting_fds,
        stdin: Stdin = .closed,
        stdout: Stdout = .closed,
        stderr: Stderr = .closed,
        eof_order: EofOrder,
        exit: Exit = .pending,
        sockets: Sockets = .separate,
        stdin_fd: i32 = -1,
        stdout_fd: i32 = -1,
        stderr_fd: i32 = -1,
        /// Where a client writes the remote stderr: our fd 2, or a copy of a front end's fd 2
        /// that the client host handed over (then ours to close).
        remote_stderr_fd: i32 = 2,
        /// Set by the pump before each step when a SIGUSR1 could still switch this stream
        /// (§6.6): an EOF on `stdout_fd` is then held (`Stdout.eof_held`) until the pump has
        /// seen every signal sent before it, because the child that signals, writes to fd 0
        /// and exits closes its stdout at once, and that EOF can reach us before its signal.
        hold_stdout_eof: bool = false,
        /// A child's stdin socket (a service's, or a client's local program's) after its write
        /// side was shut (the remote EOF, or the child hung up by exiting): kept open, as
        /// upstream keeps it, so that a later SIGUSR1 can still switch to it and read what the
        /// child wrote (§6.6).
        saved_stdin_fd: i32 = -1,
        has_child: bool = false,
        local_status: ?i32 = null,
        remote_status: ?i32 = null,
        /// Remote data accepted from the vchan but not yet written locally.
        backlog: []u8,
        backlog_start: u32 = 0,
        backlog_end: u32 = 0,
        /// Local data staged for the vchan (one chunk).
        scratch: []u8,
        prefix: []u8 = &.{},
        prefix_sent: u32 = 0,
        message: MessageState = .header,
        exit_bytes: [4]u8 = undefined,
        exit_have: u32 = 0,
        failure_buffer: [200]u8 = undefined,
        /// `Flags.mirage_chunk_bug`: the gathered "write" (`mirage_write_bytes_max` bytes,
        /// given by the pump), how much of it is filled and sent, and what is left of the
        /// current chunk's body.
        gathered: []u8 = &.{},
        gathered_len: u32 = 0,
        gathered_sent: u32 = 0,
        gathered_chunk_left: u32 = 0,
        gather: Gather = .filling,

        pub fn init(vchan: *V, is_service: bool, flags: Flags, backlog: []u8, scratch: []u8) Self {
            assert(backlog.len >= protocol.max_data_chunk_v3);
            assert(scratch.len >= protocol.max_data_chunk_v3);
            const leading_stderr = is_service and flags.stderr_eof_first;
            return .{
                .vchan = vchan,
                .is_service = is_service,
                .flags = flags,
                .backlog = backlog,
                .scratch = scratch,
                .eof_order = if (leading_stderr) .stderr_first else .stdout_first,
            };
        }

        /// Called once the HELLO exchange fixed the version.
        pub fn start(self: *Self, version: u32) void {
            self.max_chunk = protocol.max_data_chunk(version);
            assert(self.max_chunk <= self.backlog.len and self.max_chunk <= self.scratch.len);
        }

        pub fn set_fds(
            self: *Self,
            stdin_fd: i32,
            stdout_fd: i32,
            stderr_fd: i32,
            has_child: bool,
        ) void {
            self.stdin_fd = stdin_fd;
            self.stdout_fd = stdout_fd;
            self.stderr_fd = stderr_fd;
            self.has_child = has_child;
            // (Re)initialisation rather than transitions: JS sets the fds once, before any step.
            self.stdin = if (stdin_fd >= 0) .open else .closed;
            self.stdout = if (stdout_fd >= 0) .open else .closed;
            self.stderr = if (stderr_fd >= 0) .open else .closed;
            if (stdin_fd >= 0 and stdin_fd == stdout_fd) {
                self.sockets = .single;
            } else if (self.sockets == .single) self.sockets = .separate;
            if (self.phase == .awaiting_fds) self.phase = .running;
            // §6.2 step 1: a service without a stderr fd announces stderr EOF at once. Decided
            // here, not at HELLO: JS hands over the fds only after the peer connected. It is
            // the first data message, before remote input is handled and before any stdout
            // data or EOF (`step` sends it first). A mirage-qubes service never sends one (§14).
            if (self.is_service and stderr_fd < 0 and !self.flags.mirage_service) {
                self.stderr = .eof_owed;
                self.eof_order = .stderr_first;
            }
            for ([_]i32{ stdin_fd, stdout_fd, stderr_fd }) |descriptor| {
                if (descriptor >= 0) set_nonblocking(descriptor, true);
            }
            // A stream that ended before JS set its fds closes them when it is released.
            if (self.phase == .running) self.check();
        }

        /// The stream's finish, once it has one.
        pub fn outcome(self: *const Self) ?Outcome {
            return switch (self.phase) {
                .done => |done| done,
                else => null,
            };
        }

        /// When a held EOF on `stdout_fd` is acted on at the latest; null when none is held.
        pub fn stdout_eof_held_until(self: *const Self) ?u64 {
            return switch (self.stdout) {
                .eof_held => |until| until,
                else => null,
            };
        }

        // ------------------------------------------------------------ transitions

        fn set_stdout(self: *Self, next: Stdout) void {
            assert(self.stdout.may_become(next));
            self.stdout = next;
        }

        fn set_stderr(self: *Self, next: Stderr) void {
            assert(self.stderr.may_become(next));
            self.stderr = next;
        }

        fn set_exit(self: *Self, next: Exit) void {
            assert(self.is_service);
            assert(self.exit.may_become(next));
            self.exit = next;
        }

        fn set_stdin(self: *Self, next: Stdin) void {
            assert(self.stdin != .closed);
            if (next == .full) assert(self.stdin == .open and self.backlog_len() == 0);
            self.stdin = next;
        }

        fn set_done(self: *Self, result: Outcome) void {
            assert(self.phase == .running);
            self.phase = .{ .done = result };
            self.check();
        }

        /// What the states say about the fds and buffers, checked whenever a step ends.
        fn check(self: *const Self) void {
            assert((self.stdin == .closed) == (self.stdin_fd < 0));
            assert(self.stdout.reads_fd() == (self.stdout_fd >= 0));
            assert((self.stderr == .open) == (self.stderr_fd >= 0));
            assert(self.backlog_start <= self.backlog_end and self.backlog_end <= self.backlog.len);
            assert(self.stdin != .full or self.backlog_len() == 0);
            assert(self.prefix_sent <= self.prefix.len);
            assert(self.gathered_sent <= self.gathered_len);
            assert(self.gathered_len <= self.gathered.len);
            if (self.stdout == .eof_after_gathered) assert(self.gather == .sending);
            if (!self.is_service) assert(self.exit == .pending);
            if (self.phase == .done) {
                assert(self.stdin_fd < 0 and self.stdout_fd < 0 and self.stderr_fd < 0);
            }
        }

        /// The state an EOF read from `stdout_fd` leads to, once any gathered data is out:
        /// owed now, or for a mirage-qubes service at completion (`finish`), right before the
        /// exit code (§14).
        fn local_eof_state(self: *const Self) Stdout {
            return if (self.is_service and self.flags.mirage_service) .closed else .eof_owed;
        }

        // ------------------------------------------------------------ poll interests

        pub const Interest = struct {
            stdin: i16 = 0,
            stdout: i16 = 0,
            stderr: i16 = 0,
            immediate: bool = false,
        };

        /// What to poll for, and whether there is work to do without waiting.
        pub fn interest(self: *Self) Interest {
            var result = Interest{};
            if (self.phase != .running) return result;
            // Stdin is polled even with nothing queued so a hang-up (HUP/ERR) is seen (§13.5).
            if (self.stdin != .closed) {
                result.stdin = if (self.output_blocked()) linux.POLL.OUT else 0;
            }
            // The peer is asked to kick us (the arming `buffer_space`/`data_ready`) only when we
            // are about to wait for it; a peer kicking after every write and read costs two
            // syscalls and a wakeup per chunk.
            var space = self.vchan.peek_buffer_space();
            const prefix_left = self.prefix_sent < self.prefix.len;
            const finishing = self.ready_to_finish();
            const wants_space = self.stdout.reads_fd() or self.stderr == .open or prefix_left or
                self.owes_message() or self.gather == .sending or finishing;
            // Below this, the next step may find no room: ask for a kick when the peer reads.
            const room_usual = protocol.exit_code_bytes + 1;
            const room_wanted = if (finishing)
                @max(self.finish_bytes(), room_usual)
            else
                room_usual;
            if (wants_space and space < room_wanted) space = self.vchan.buffer_space();
            if (space > protocol.header_bytes) {
                if (self.stdout == .open and !prefix_left) result.stdout = linux.POLL.IN;
                if (self.stderr == .open) result.stderr = linux.POLL.IN;
            }
            if (self.flags.mirage_chunk_bug) {
                // Gathering reads into its own buffer, whatever room the ring has.
                const gathering = self.stdout == .open and self.gather == .filling and !prefix_left;
                result.stdout = if (gathering) linux.POLL.IN else 0;
                const needed: u32 = if (self.gathered_chunk_left > 0) 1 else protocol.header_bytes;
                if (self.gather == .sending and space >= needed) result.immediate = true;
            }
            if (prefix_left and space > protocol.header_bytes) result.immediate = true;
            if (!self.output_blocked()) {
                // A header is taken whole; a body in any piece.
                const needed: u32 = if (self.message == .header) protocol.header_bytes else 1;
                var ready = self.vchan.peek_data_ready();
                if (ready < needed) ready = self.vchan.data_ready();
                if (ready >= needed) result.immediate = true;
            }
            if (self.owes_message() and space >= protocol.exit_code_bytes) result.immediate = true;
            if (finishing and space >= self.finish_bytes()) result.immediate = true;
            return result;
        }

        /// Ring space `finish` needs: the exit code (a mirage-qubes service's stdout EOF with
        /// it), none once it is sent or on a client.
        fn finish_bytes(self: *const Self) u32 {
            if (!self.is_service or self.exit == .sent) return 0;
            const with_eof = self.flags.mirage_service and self.stdout != .eof_sent;
            return protocol.exit_code_bytes + if (with_eof) protocol.header_bytes else 0;
        }

        fn owes_message(self: *const Self) bool {
            return self.stdout == .eof_owed or self.stderr == .eof_owed or self.exit == .forced;
        }

        fn backlog_len(self: *const Self) u32 {
            return self.backlog_end - self.backlog_start;
        }

        /// Remote data is waiting for `stdin_fd` to take it (in the backlog or in the ring).
        fn output_blocked(self: *const Self) bool {
            return self.backlog_len() > 0 or self.stdin == .full;
        }

        // ------------------------------------------------------------ the step

        /// One iteration of §6.2. `revents` are hints from poll; every action is non-blocking.
        pub fn step(self: *Self, in_revents: i16, out_revents: i16, err_revents: i16) void {
            if (self.phase != .running) return;
            defer self.check();
            // Step 1: an owed leading stderr EOF goes before anything else; without ring space
            // for it, nothing else happens yet, unless the peer is gone (step 4 must still end
            // the call).
            if (self.eof_order == .stderr_first and self.stderr == .eof_owed) {
                self.send_owed_stderr_eof() catch return;
                const open = self.vchan.state_polled() != .disconnected;
                if (self.stderr == .eof_owed and open) return;
            }
            // Step 7: a hung-up output means nothing more can be delivered there.
            if (self.stdin != .closed and in_revents & (linux.POLL.HUP | linux.POLL.ERR) != 0) {
                self.close_stdin();
            }
            self.remote_to_local() catch return;
            if (self.phase != .running) return;
            self.local_to_remote(out_revents, err_revents) catch return;
            self.send_owed() catch return;
            if (self.phase != .running) return;
            if (self.ready_to_finish()) {
                self.finish();
                // Else the exit code waits for ring space, which a departed peer never makes:
                // step 4 ends the call then.
                if (self.phase != .running) return;
            }
            // §6.9: nothing read locally can reach a departed peer. A service's output fds are
            // closed now rather than when the call ends: a service blocked writing them (its
            // output backed up toward the dead caller) would never read the input still being
            // delivered, and the call would never end. It sees EPIPE or SIGPIPE, as upstream's.
            const reading = self.stdout.reads_fd() or self.stderr == .open;
            if (self.is_service and reading and self.vchan.peer_gone_for_writing()) {
                self.close_stdout(.closed);
                self.close_stderr(.closed);
            }
            // Step 4: the peer is gone and nothing is left to deliver (a header it did not
            // finish is nothing: it can never be read whole).
            const open = self.vchan.state_polled() != .disconnected;
            const usable: u32 = if (self.message == .header) protocol.header_bytes else 1;
            if (!open and self.vchan.peek_data_ready() < usable and self.backlog_len() == 0) {
                self.close_all();
                const status = if (self.is_service) self.local_status else self.remote_status;
                self.set_done(.{ .done = status orelse -1 });
            }
        }

        fn ready_to_finish(self: *const Self) bool {
            switch (self.exit) {
                .forced => return false,
                .sent => return true,
                .pending => {},
            }
            const local_done = !self.has_child or self.local_status != null;
            const stdout_done = switch (self.stdout) {
                .eof_sent, .closed => true,
                .open, .eof_held, .eof_after_gathered, .eof_owed => false,
            };
            if (self.stdin != .closed or !stdout_done or !local_done) return false;
            if (self.gathered_len != 0) return false;
            if (self.is_service) {
                return self.stderr == .eof_sent or
                    (self.stderr == .closed and self.flags.mirage_service);
            }
            return self.remote_status != null and !self.output_blocked();
        }

        fn finish(self: *Self) void {
            if (self.is_service and self.exit != .sent) {
                const status = switch (self.exit) {
                    .forced => |forced| forced,
                    .pending, .sent => self.local_status orelse 0,
                };
                // A mirage-qubes service ends with DATA_STDOUT("") and the exit code, together
                // (§14).
                if (self.flags.mirage_service and self.stdout != .eof_sent) {
                    const needed = protocol.header_bytes + protocol.exit_code_bytes;
                    if (self.vchan.peek_buffer_space() < needed) return;
                    // The space is there; a closed vchan fails the exit code's send below too.
                    self.send_eof(.data_stdout) catch {};
                    self.set_stdout(.eof_sent);
                }
                if (!self.try_send_exit(status)) return;
            }
            self.close_all();
            const status = switch (self.exit) {
                .sent => |sent| sent,
                .pending, .forced => self.remote_status orelse -1,
            };
            self.set_done(.{ .done = status });
        }

        const Failed = error{Failed};

        fn fail(self: *Self, errno: linux.E, comptime fmt: []const u8, args: anytype) Failed {
            const buffer = &self.failure_buffer;
            const message = std.fmt.bufPrint(buffer, fmt, args) catch buffer[0..];
            self.close_all();
            self.set_done(.{ .failed = .{ .errno = errno, .message = message } });
            return error.Failed;
        }

        // ------------------------------------------------------------ remote -> local

        fn remote_to_local(self: *Self) Failed!void {
            // Step 8.1: flush the backlog first; while it is not empty, take nothing from the
            // vchan.
            if (!try self.flush_backlog()) return;
            // Data left in the ring for a full stdin_fd: offer it again below.
            if (self.stdin == .full) self.set_stdin(.open);
            var rounds: u32 = 0;
            while (rounds < 64) : (rounds += 1) {
                switch (self.message) {
                    .header => {
                        if (self.vchan.peek_data_ready() < protocol.header_bytes) return;
                        var raw: [protocol.header_bytes]u8 = undefined;
                        const got = self.vchan.recv(&raw) catch return self.vchan_failure();
                        assert(got == raw.len);
                        try self.on_header(protocol.Header.decode(raw));
                    },
                    .body => |body| {
                        assert(body.remaining > 0 and body.remaining <= self.max_chunk);
                        const ready = self.vchan.peek_data_ready();
                        if (ready == 0) return;
                        try self.on_body(body.type, body.remaining, ready);
                        if (self.output_blocked()) return;
                    },
                }
                if (self.phase != .running) return;
            }
        }

        fn on_header(self: *Self, untrusted: protocol.Header) Failed!void {
            if (untrusted.len > self.max_chunk) {
                // Exactly what mirage-qubes 2.0 sends for any write above the chunk limit (§14
                // bug 1): the first header of the split announces the whole rest. Its next
                // headers would each be smaller by one chunk, but no compliant receiver can get
                // that far.
                return self.fail(.PROTO, "peer protocol error: chunk header carries the total " ++
                    "remaining length (mirage-qubes 2.0 bug): a data message of {d} bytes " ++
                    "exceeds the {d}-byte chunk limit", .{ untrusted.len, self.max_chunk });
            }
            const msg_type: MsgType = @enumFromInt(untrusted.type);
            if (self.is_service and self.flags.mirage_service and msg_type != .data_stdin) {
                // mirage-qubes reads only DATA_STDIN and drops the vchan on anything else (§14).
                return self.fail(
                    .PROTO,
                    "peer protocol error: message type 0x{x} on the data " ++
                        "channel; a mirage-qubes service reads only DATA_STDIN and drops the vchan",
                    .{untrusted.type},
                );
            }
            const body = MessageState.of(msg_type, untrusted.len);
            switch (msg_type) {
                .data_stdin, .data_stdout => {
                    // Either type is accepted on both sides: Windows tools mix them (§13.8).
                    self.mark(if (untrusted.len == 0) .eof_received else .first_byte_received);
                    if (untrusted.len == 0) return self.close_stdin();
                    self.message = body;
                },
                .data_stderr => {
                    if (untrusted.len > 0) self.message = body;
                },
                .data_exit_code => {
                    if (untrusted.len > 0) self.message = body;
                    if (untrusted.len == 0) self.on_exit_code(&.{});
                },
                else => return self.fail(.PROTO, "peer protocol error: unexpected message type " ++
                    "0x{x} on a data channel", .{untrusted.type}),
            }
        }

        fn on_body(self: *Self, msg_type: MsgType, remaining: u32, ready: u32) Failed!void {
            assert(ready > 0 and remaining > 0);
            if (msg_type == .data_exit_code) return self.on_exit_body(remaining, ready);
            // Straight from the ring to stdin_fd when the bytes go out unchanged (no -t filter,
            // which must work on a private copy: the peer could rewrite shared bytes after the
            // filter ran).
            const filtered = !self.is_service and self.flags.filter_stdout;
            const unfiltered = msg_type != .data_stderr and !filtered;
            assert(self.stdin != .full);
            if (unfiltered and self.stdin == .open) {
                var pieces: [2]std.posix.iovec = undefined;
                const count = @min(remaining, ready);
                if (self.vchan.read_window(count, &pieces)) |window| {
                    return self.write_from_ring(msg_type, remaining, window);
                }
            }
            const take = @min(remaining, ready, @as(u32, @intCast(self.backlog.len)));
            assert(self.backlog_len() == 0);
            const got = self.vchan.read(self.backlog[0..take]) catch return self.vchan_failure();
            assert(got <= take);
            self.set_body_left(msg_type, remaining - got);
            const chunk = self.backlog[0..got];
            switch (msg_type) {
                .data_stderr => {
                    // A service ignores stderr from its caller (no log injection, §6.2 step 8.2).
                    if (self.is_service) return;
                    if (self.flags.filter_stderr) filter(chunk);
                    const fd = self.remote_stderr_fd;
                    if (fd >= 0) write_all_best_effort(fd, chunk);
                },
                else => {
                    if (self.stdin == .closed) return;
                    if (!self.is_service and self.flags.filter_stdout) filter(chunk);
                    self.backlog_start = 0;
                    self.backlog_end = got;
                    _ = try self.flush_backlog();
                },
            }
        }

        fn set_body_left(self: *Self, msg_type: MsgType, left: u32) void {
            self.message = if (left == 0) .header else MessageState.of(msg_type, left);
        }

        /// Only the first 4 bytes of an exit code mean anything; longer payloads are drained
        /// and ignored.
        fn on_exit_body(self: *Self, remaining: u32, ready: u32) Failed!void {
            const take = @min(remaining, ready, @as(u32, @intCast(self.backlog.len)));
            const got = self.vchan.read(self.backlog[0..take]) catch return self.vchan_failure();
            assert(got <= take);
            const keep = @min(got, 4 -| self.exit_have);
            @memcpy(self.exit_bytes[self.exit_have..][0..keep], self.backlog[0..keep]);
            self.exit_have += keep;
            assert(self.exit_have <= self.exit_bytes.len);
            self.set_body_left(.data_exit_code, remaining - got);
            if (remaining - got > 0) return;
            const status = self.exit_bytes[0..self.exit_have];
            self.exit_have = 0;
            return self.on_exit_code(status);
        }

        /// One writev of ring bytes (a body's next piece) to stdin_fd; what it does not take
        /// stays in the ring, and stdin_fd is polled for room before the ring is read again.
        fn write_from_ring(
            self: *Self,
            msg_type: MsgType,
            remaining: u32,
            window: []std.posix.iovec,
        ) Failed!void {
            var offered: usize = 0;
            for (window) |piece| offered += piece.len;
            assert(offered > 0 and offered <= remaining);
            const rc = linux.writev(self.stdin_fd, @ptrCast(window.ptr), window.len);
            switch (sys.errno_of(rc)) {
                .SUCCESS => {},
                .AGAIN => return self.set_stdin(.full),
                // Nothing was taken; the loop offers the bytes again.
                .INTR => return,
                // A write error is EOF for the receiver (§6.2 step 8.1); the body is dropped.
                else => return self.close_stdin(),
            }
            assert(rc <= offered);
            const wrote: u32 = @intCast(rc);
            self.vchan.commit_read(wrote);
            self.set_body_left(msg_type, remaining - wrote);
            if (wrote < offered) self.set_stdin(.full);
        }

        fn on_exit_code(self: *Self, payload: []const u8) void {
            if (self.is_service) return;
            self.mark(.exit_received);
            // Shorter than 4 bytes: status 255 (§3.3).
            const status = if (payload.len >= 4) payload[0..4] else null;
            self.remote_status = if (status) |bytes| std.mem.readInt(i32, bytes, .little) else 255;
            // Step 8.3: stop sending local data once the exit code has been seen.
            self.close_stdout(.eof_owed);
            self.drop_gathered();
        }

        /// True when the backlog is empty afterwards.
        fn flush_backlog(self: *Self) Failed!bool {
            while (self.backlog_len() > 0) {
                if (self.stdin == .closed) break;
                const pending = self.backlog[self.backlog_start..self.backlog_end];
                const rc = linux.write(self.stdin_fd, pending.ptr, pending.len);
                switch (sys.errno_of(rc)) {
                    .SUCCESS => {
                        assert(rc <= pending.len);
                        self.backlog_start += @intCast(rc);
                    },
                    .AGAIN => return false,
                    .INTR => continue,
                    // A write error is EOF for the receiver (§6.2 step 8.1).
                    else => self.close_stdin(),
                }
            }
            self.backlog_start = 0;
            self.backlog_end = 0;
            return true;
        }

        // ------------------------------------------------------------ local -> remote

        fn local_type(self: *const Self) MsgType {
            return if (self.is_service) .data_stdout else .data_stdin;
        }

        fn local_to_remote(self: *Self, out_revents: i16, err_revents: i16) Failed!void {
            const data_type = self.local_type();
            if (self.prefix_sent < self.prefix.len) {
                try self.send_prefix(data_type);
                if (self.prefix_sent < self.prefix.len) return;
            }
            if (self.flags.mirage_chunk_bug) {
                const filling = self.gather == .filling;
                if (self.stdout == .open and out_revents != 0 and filling) try self.gather_local();
                if (self.gather == .sending) try self.send_gathered(data_type);
            } else if (self.stdout == .open and out_revents != 0) try self.pump_fd(.stdout);
            if (self.stderr == .open and err_revents != 0) try self.pump_fd(.stderr);
        }

        fn send_prefix(self: *Self, data_type: MsgType) Failed!void {
            while (self.prefix_sent < self.prefix.len) {
                const space = self.vchan.peek_buffer_space();
                if (space <= protocol.header_bytes) return;
                const left = self.prefix.len - self.prefix_sent;
                const room = space - protocol.header_bytes;
                const count: u32 = @intCast(@min(room, self.max_chunk, left));
                try self.send_data(data_type, self.prefix[self.prefix_sent..][0..count]);
                self.prefix_sent += count;
            }
        }

        const Source = enum { stdout, stderr };

        /// Step 9: read local data in chunks that fit the ring, until EAGAIN or EOF.
        fn pump_fd(self: *Self, source: Source) Failed!void {
            const data_type: MsgType = if (source == .stderr) .data_stderr else self.local_type();
            const fd = if (source == .stderr) self.stderr_fd else self.stdout_fd;
            assert(fd >= 0);
            var rounds: u32 = 0;
            while (rounds < 16) : (rounds += 1) {
                const space = self.vchan.peek_buffer_space();
                if (space <= protocol.header_bytes) return;
                const count = @min(space - protocol.header_bytes, self.max_chunk);
                // Straight into the ring after room for the header (zero-copy), else via scratch.
                var pieces: [2]std.posix.iovec = undefined;
                const window = self.vchan.write_window(protocol.header_bytes, count, &pieces);
                const rc = if (window) |w|
                    linux.readv(fd, w.ptr, w.len)
                else
                    linux.read(fd, self.scratch.ptr, count);
                switch (sys.errno_of(rc)) {
                    .SUCCESS => {},
                    .AGAIN => return,
                    .INTR => continue,
                    // ECONNRESET counts as EOF (§13.5); so does any other read error.
                    else => {},
                }
                const got: u32 = if (sys.errno_of(rc) == .SUCCESS) @intCast(rc) else 0;
                assert(got <= count);
                if (got == 0) return self.on_fd_eof(source);
                if (source == .stdout) self.mark(.first_byte_sent);
                if (window != null) {
                    const header = header_of(data_type, got);
                    self.vchan.commit_write(&header, got) catch return self.send_failure();
                } else {
                    try self.send_data(data_type, self.scratch[0..got]);
                }
            }
        }

        fn on_fd_eof(self: *Self, source: Source) Failed!void {
            switch (source) {
                .stderr => self.close_stderr(if (self.flags.mirage_service) .closed else .eof_owed),
                .stdout => {
                    if (self.hold_stdout_eof and self.sockets != .single) {
                        self.set_stdout(.{ .eof_held = sys.now_ns() + stdout_eof_hold_ns });
                        return;
                    }
                    self.on_stdout_eof();
                },
            }
            return self.send_owed();
        }

        fn on_stdout_eof(self: *Self) void {
            assert(self.stdout.reads_fd());
            // Gathered data (the chunk-length bug) goes out first, then the EOF.
            if (self.gathered_len > 0) {
                self.gather = .sending;
                self.close_stdout(.eof_after_gathered);
            } else self.close_stdout(self.local_eof_state());
            if (self.is_service and self.flags.exit_on_service_eof) self.close_stdin();
        }

        // ------------------------------------------------------------ mirage-qubes 2.0 bug 1

        /// Reads local data into `gathered` until EAGAIN, EOF or a full buffer; the last two
        /// start sending it as one write.
        fn gather_local(self: *Self) Failed!void {
            while (self.stdout == .open and self.gather == .filling) {
                const room = self.gathered[self.gathered_len..];
                if (room.len == 0) {
                    self.gather = .sending;
                    return;
                }
                const rc = linux.read(self.stdout_fd, room.ptr, room.len);
                switch (sys.errno_of(rc)) {
                    .SUCCESS => {},
                    .AGAIN => return,
                    .INTR => continue,
                    else => {},
                }
                const got: u32 = if (sys.errno_of(rc) == .SUCCESS) @intCast(rc) else 0;
                assert(got <= room.len);
                if (got > 0) {
                    self.gathered_len += got;
                    continue;
                }
                if (self.hold_stdout_eof and self.sockets != .single) {
                    self.set_stdout(.{ .eof_held = sys.now_ns() + stdout_eof_hold_ns });
                    return;
                }
                return self.on_stdout_eof();
            }
        }

        /// mirage-qubes 2.0's `send` (§14 bug 1): chunks of at most `max_chunk` bytes whose
        /// headers each carry everything still to send. A write within one chunk comes out
        /// right.
        fn send_gathered(self: *Self, data_type: MsgType) Failed!void {
            while (self.gathered_sent < self.gathered_len) {
                var space = self.vchan.peek_buffer_space();
                if (self.gathered_chunk_left == 0) {
                    if (space < protocol.header_bytes) return;
                    const rest = self.gathered_len - self.gathered_sent;
                    const header = header_of(data_type, rest);
                    const wrote_header = self.vchan.write(&header) catch return self.send_failure();
                    assert(wrote_header == header.len);
                    self.gathered_chunk_left = @min(rest, self.max_chunk);
                    space -= protocol.header_bytes;
                }
                if (space == 0) return;
                const count = @min(space, self.gathered_chunk_left);
                const piece = self.gathered[self.gathered_sent..][0..count];
                const wrote = self.vchan.write(piece) catch return self.send_failure();
                assert(wrote <= count);
                self.gathered_sent += wrote;
                self.gathered_chunk_left -= wrote;
                if (wrote < count) return;
            }
            const eof = self.stdout == .eof_after_gathered;
            if (eof) self.set_stdout(self.local_eof_state());
            self.drop_gathered();
            if (eof) try self.send_owed();
        }

        /// Forgets the gathered write, and with it an EOF that was to follow it.
        fn drop_gathered(self: *Self) void {
            self.gathered_len = 0;
            self.gathered_sent = 0;
            self.gathered_chunk_left = 0;
            self.gather = .filling;
            if (self.stdout == .eof_after_gathered) self.set_stdout(.closed);
        }

        /// No SIGUSR1 is coming for this stream: the held EOF on `stdout_fd` is acted on now
        /// (it is sent on the next step, which `interest` asks for at once).
        pub fn release_stdout_eof(self: *Self) void {
            if (self.stdout != .eof_held) return;
            self.on_stdout_eof();
        }

        /// Bytes the child wrote to its stdin socket (its fd 0) that nobody has read: a child
        /// that did that has signalled SIGUSR1 first, or is about to be told off by losing them.
        pub fn child_wrote_to_stdin_socket(self: *const Self) bool {
            const socket_fd = if (self.stdin != .closed) self.stdin_fd else self.saved_stdin_fd;
            if (socket_fd < 0) return false;
            var count: c_int = 0;
            const rc = linux.ioctl(socket_fd, linux.T.FIONREAD, @intFromPtr(&count));
            return sys.errno_of(rc) == .SUCCESS and count > 0;
        }

        fn send_data(self: *Self, data_type: MsgType, data: []const u8) Failed!void {
            assert(data.len <= self.max_chunk);
            const header = header_of(data_type, @intCast(data.len));
            // Space was checked by the caller, so neither write can come back short.
            const wrote_header = self.vchan.write(&header) catch return self.send_failure();
            const wrote_data = self.vchan.write(data) catch return self.send_failure();
            assert(wrote_header == header.len and wrote_data == data.len);
        }

        /// EOF headers and the exit code, in the order §6.3 requires, as ring space allows:
        /// stdout's EOF before stderr's unless stderr's leads (`eof_order`), the exit code last.
        fn send_owed(self: *Self) Failed!void {
            if (self.eof_order == .stderr_first) {
                try self.send_owed_stderr_eof();
                if (self.stderr == .eof_owed) return;
            }
            try self.send_owed_stdout_eof();
            if (self.stdout == .eof_owed) return;
            try self.send_owed_stderr_eof();
            if (self.stderr == .eof_owed) return;
            switch (self.exit) {
                .forced => |status| _ = self.try_send_exit(status),
                .pending, .sent => {},
            }
        }

        fn send_owed_stdout_eof(self: *Self) Failed!void {
            if (self.stdout != .eof_owed) return;
            if (self.vchan.peek_buffer_space() < protocol.header_bytes) return;
            self.mark(.eof_sent);
            self.send_eof(self.local_type()) catch {
                // Failing to send the final EOF is not an error (§13.1).
                if (!self.is_service) return self.set_stdout(.closed);
                return self.send_failure();
            };
            self.set_stdout(.eof_sent);
        }

        fn send_owed_stderr_eof(self: *Self) Failed!void {
            if (self.stderr != .eof_owed) return;
            if (self.vchan.peek_buffer_space() < protocol.header_bytes) return;
            self.send_eof(.data_stderr) catch return self.send_failure();
            self.set_stderr(.eof_sent);
        }

        fn send_eof(self: *Self, data_type: MsgType) !void {
            const header = header_of(data_type, 0);
            _ = try self.vchan.send(&header);
        }

        fn try_send_exit(self: *Self, status: i32) bool {
            assert(self.is_service and self.exit != .sent);
            if (self.vchan.peek_buffer_space() < protocol.exit_code_bytes) return false;
            var message: [protocol.exit_code_bytes]u8 = undefined;
            message[0..8].* = header_of(.data_exit_code, 4);
            std.mem.writeInt(i32, message[8..12], status, .little);
            // Marked before the send: once sent, the peer may time its receipt before we get
            // here.
            self.mark(.exit_sent);
            // A failed send ends the call just the same: nothing may follow an exit code.
            _ = self.vchan.send(&message) catch {};
            self.set_exit(.{ .sent = status });
            return true;
        }

        fn mark(self: *Self, which: Mark) void {
            const slot = &self.marks[@intFromEnum(which)];
            if (slot.* == 0) slot.* = sys.realtime_ns();
        }

        fn send_failure(self: *Self) Failed {
            // §6.2 step 9.5: a client whose remote status is unknown keeps reading for it.
            if (!self.is_service and self.remote_status == null) {
                self.drop_gathered();
                self.close_stdout(.closed);
                return error.Failed;
            }
            return self.fail(.PIPE, "vchan closed while sending: {s}", .{self.vchan.reason()});
        }

        fn vchan_failure(self: *Self) Failed {
            const errno: linux.E = @enumFromInt(@as(u16, @intCast(diag.errno())));
            return self.fail(errno, "{s}", .{diag.message()});
        }

        // ------------------------------------------------------------ local events from JS

        pub fn on_local_exit(self: *Self, status: i32) void {
            self.local_status = status;
            // §6.2 step 2: the child is gone, so remote input has nowhere to go.
            if (self.is_service) self.close_stdin();
        }

        /// Service side: end with `status` (spawn failure: with both EOFs; JUST_EXEC: without).
        pub fn finish_with(self: *Self, status: i32, eofs: bool) void {
            assert(self.is_service);
            if (self.phase == .awaiting_fds) self.phase = .running;
            if (self.exit != .sent) self.set_exit(.{ .forced = status });
            self.drop_gathered();
            if (eofs) {
                if (self.stdout != .eof_sent) {
                    self.close_stdout(.eof_owed);
                    self.set_stdout(.eof_owed);
                }
                if (self.flags.mirage_service) {
                    if (self.stderr == .eof_owed) self.set_stderr(.closed);
                } else if (self.stderr != .eof_sent) {
                    self.close_stderr(.eof_owed);
                    self.set_stderr(.eof_owed);
                }
            } else {
                // What is still open closes below without an EOF (but see `close_stdin`).
                if (self.stdout == .eof_owed) self.set_stdout(.closed);
                if (self.stderr == .eof_owed) self.set_stderr(.closed);
            }
            self.close_all();
        }

        /// SIGUSR1 now, or as soon as the fds are set.
        pub fn request_single_socket(self: *Self) void {
            if (self.phase != .awaiting_fds) return self.enter_single_socket();
            assert(self.sockets != .single);
            self.sockets = .requested;
        }

        /// SIGUSR1 (§6.6): the child writes its output to its stdin socket from now on.
        pub fn enter_single_socket(self: *Self) void {
            if (self.sockets == .single or !self.stdout.reads_fd()) return;
            // After the caller's EOF the socket lives on as `saved_stdin_fd` (upstream's
            // test_stdio_socket_closed_stdin).
            const socket_fd = if (self.stdin != .closed) self.stdin_fd else self.saved_stdin_fd;
            if (socket_fd < 0) return;
            _ = linux.shutdown(self.stdout_fd, linux.SHUT.RD);
            sys.close(self.stdout_fd);
            // A held EOF was the old stdout's, which is gone now.
            self.set_stdout(.open);
            self.stdout_fd = socket_fd;
            if (socket_fd == self.saved_stdin_fd) self.saved_stdin_fd = -1;
            self.sockets = .single;
        }

        // ------------------------------------------------------------ closing (§6.4)

        fn close_stdin(self: *Self) void {
            if (self.stdin == .closed) return;
            if (self.is_service and self.flags.exit_on_client_eof) {
                self.close_stdout(self.local_eof_state());
            }
            self.backlog_start = 0;
            self.backlog_end = 0;
            self.stdin = .closed;
            const descriptor = self.stdin_fd;
            const shut_only = (self.is_service or self.has_child) and self.sockets != .single and
                descriptor > 2 and descriptor != self.stdout_fd;
            if (shut_only) {
                // A socket is only shut down: the child reads EOF, and may still switch to it.
                // A local program that signals, writes to fd 0 and exits at once hangs the
                // socket up (POLLHUP here) before its signal may have been seen; closing it
                // would drop what it wrote.
                if (sys.errno_of(linux.shutdown(descriptor, linux.SHUT.WR)) == .SUCCESS) {
                    self.stdin_fd = -1;
                    self.saved_stdin_fd = descriptor;
                    return;
                }
            }
            self.close_direction(&self.stdin_fd, linux.SHUT.WR);
        }

        /// Stops reading `stdout_fd` (if it still is) and moves on to `then`.
        fn close_stdout(self: *Self, then: Stdout) void {
            if (!self.stdout.reads_fd()) return;
            assert(!then.reads_fd());
            self.set_stdout(then);
            self.close_direction(&self.stdout_fd, linux.SHUT.RD);
        }

        fn close_stderr(self: *Self, then: Stderr) void {
            if (self.stderr != .open) return;
            assert(then != .open);
            self.set_stderr(then);
            sys.close(self.stderr_fd);
            self.stderr_fd = -1;
        }

        /// Half-closes one direction; the fd itself is closed when no direction uses it any more.
        fn close_direction(self: *Self, fd: *i32, how: i32) void {
            const descriptor = fd.*;
            assert(descriptor >= 0);
            fd.* = -1;
            const shared = descriptor == self.stdin_fd or descriptor == self.stdout_fd;
            const single = self.sockets == .single;
            if (descriptor > 2 or single) {
                const rc = linux.shutdown(descriptor, how);
                if (sys.errno_of(rc) == .NOTSOCK and !single) {
                    sys.close(descriptor);
                    return;
                }
                if (!shared) sys.close(descriptor);
                return;
            }
            // An inherited 0-2 goes back to blocking mode before we let go of it.
            set_nonblocking(descriptor, false);
            if (!shared) sys.close(descriptor);
        }

        pub fn close_all(self: *Self) void {
            if (self.remote_stderr_fd > 2) sys.close(self.remote_stderr_fd);
            self.remote_stderr_fd = -1;
            self.close_stdin();
            self.close_stdout(.closed);
            self.close_stderr(.closed);
            if (self.saved_stdin_fd >= 0) {
                sys.close(self.saved_stdin_fd);
                self.saved_stdin_fd = -1;
            }
        }
    };
}

/// `-t`/`-T` (§6.5): every byte outside printable ASCII becomes `_`, except TAB, LF, CR, BS, BEL.
pub fn filter(bytes: []u8) void {
    for (bytes) |*byte| {
        const c = byte.*;
        const printable = c >= 0x20 and c <= 0x7e;
        const allowed = printable or c == 0x09 or c == 0x0a or c == 0x0d or c == 0x08 or c == 0x07;
        if (!allowed) byte.* = '_';
    }
}

fn header_of(msg_type: MsgType, len: u32) [protocol.header_bytes]u8 {
    return (protocol.Header{ .type = @intFromEnum(msg_type), .len = len }).encode();
}

fn set_nonblocking(descriptor: i32, on: bool) void {
    const flags = linux.fcntl(descriptor, linux.F.GETFL, 0);
    if (sys.errno_of(flags) != .SUCCESS) return;
    const nonblock: usize = 1 << @bitOffsetOf(linux.O, "NONBLOCK");
    const wanted = if (on) flags | nonblock else flags & ~nonblock;
    if (wanted != flags) _ = linux.fcntl(descriptor, linux.F.SETFL, wanted);
}

/// Remote stderr on a client goes to our own fd 2; it is rare and small, so a short blocking
/// wait for a full terminal or pipe is acceptable, but never forever.
fn write_all_best_effort(descriptor: i32, bytes: []const u8) void {
    var offset: usize = 0;
    var attempts: u32 = 0;
    while (offset < bytes.len and attempts < 1000) : (attempts += 1) {
        const rc = linux.write(descriptor, bytes[offset..].ptr, bytes.len - offset);
        switch (sys.errno_of(rc)) {
            .SUCCESS => offset += rc,
            .AGAIN => {
                const wanted = linux.pollfd{
                    .fd = descriptor,
                    .events = linux.POLL.OUT,
                    .revents = 0,
                };
                var poll_fd = [_]linux.pollfd{wanted};
                _ = linux.poll(&poll_fd, 1, 10);
            },
            .INTR => {},
            else => return,
        }
    }
}

test "data: filter keeps printable text and the allowed controls" {
    var text = "ok\t\x1b[31m\x00\xffline\r\n\x07\x08".*;
    filter(&text);
    try std.testing.expectEqualStrings("ok\t_[31m__line\r\n\x07\x08", &text);
}

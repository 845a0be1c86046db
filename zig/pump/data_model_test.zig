//! A seeded model test of the data pump (data.zig): one `Data` over a fake vchan (two plain
//! rings, a peer that dies on request), real pipes and socketpairs as its local fds, and a
//! random interleaving of local reads and writes, remote messages, EOFs, exits, peer death,
//! ring sizes, protocol versions and flags. After each run it checks what must hold whatever
//! the interleaving: bytes in = bytes out per direction (a prefix when something legitimately
//! cut a direction short), the exit code sent exactly once and last, no message after it, at
//! most one EOF per stream and no data after it, the outcome's status, and that the stream
//! ends once everything around it has.
//!
//! `zig build test` runs a fixed seed. For longer runs with a random seed:
//!   zig build model -Dseconds=60 [-Dseed=N]     (or QRX_MODEL_SEED / QRX_MODEL_SECONDS)
//! A failure prints the run's seed; `-Dseed=THAT -Dseconds=0` replays exactly that run.
const std = @import("std");
const linux = std.os.linux;
const assert = std.debug.assert;
const testing = std.testing;

const data_mod = @import("data.zig");
const diag = @import("../diag.zig");
const protocol = @import("../protocol.zig");
const State = @import("../constants.zig").State;

const Data = data_mod.DataOver(FakeVchan);
/// F_SETPIPE_SZ (fcntl.h), which std.os.linux does not name.
const f_setpipe_sz = 1031;
const MsgType = protocol.MsgType;
const Iovec = std.posix.iovec;
const Pieces = [2]Iovec;

/// A ring as a vchan has it: free-running indices over a power-of-two buffer.
const Ring = struct {
    bytes: []u8,
    prod: u32 = 0,
    cons: u32 = 0,

    fn used(self: *const Ring) u32 {
        const count = self.prod -% self.cons;
        assert(count <= self.bytes.len);
        return count;
    }

    fn space(self: *const Ring) u32 {
        return @as(u32, @intCast(self.bytes.len)) - self.used();
    }

    /// `count` bytes starting `skip` past `index`, as one or two pieces in stream order.
    fn window(self: *Ring, index: u32, skip: u32, count: u32, pieces: *Pieces) []Iovec {
        const size: u32 = @intCast(self.bytes.len);
        const position = (index +% skip) & (size - 1);
        const first = @min(count, size - position);
        pieces[0] = .{ .base = self.bytes.ptr + position, .len = first };
        pieces[1] = .{ .base = self.bytes.ptr, .len = count - first };
        return pieces[0..if (count > first) 2 else 1];
    }

    fn push(self: *Ring, source: []const u8) u32 {
        const count: u32 = @intCast(@min(source.len, self.space()));
        var pieces: Pieces = undefined;
        var offset: usize = 0;
        for (self.window(self.prod, 0, count, &pieces)) |piece| {
            @memcpy(piece.base[0..piece.len], source[offset..][0..piece.len]);
            offset += piece.len;
        }
        self.prod +%= count;
        return count;
    }

    fn pop(self: *Ring, target: []u8) u32 {
        const count: u32 = @intCast(@min(target.len, self.used()));
        var pieces: Pieces = undefined;
        var offset: usize = 0;
        for (self.window(self.cons, 0, count, &pieces)) |piece| {
            @memcpy(target[offset..][0..piece.len], piece.base[0..piece.len]);
            offset += piece.len;
        }
        self.cons +%= count;
        return count;
    }
};

/// The `Vchan` methods data.zig calls, over two local rings: `out` is what Data writes (the
/// peer reads it), `in` what the peer writes. A dead peer takes nothing more, and what it left
/// in `in` is still delivered, as on shm.
const FakeVchan = struct {
    out: Ring,
    in: Ring,
    alive: bool = true,
    /// Whether the zero-copy windows are offered (shm) or not (socket).
    windows: bool,
    /// The peer moved bytes or died since the pump last stepped: the event channel's kick (or
    /// the hang-up) that wakes the real pump.
    kicked: bool = false,

    pub fn peek_buffer_space(self: *FakeVchan) u32 {
        return if (self.alive) self.out.space() else 0;
    }
    pub fn buffer_space(self: *FakeVchan) u32 {
        return self.peek_buffer_space();
    }
    pub fn peek_data_ready(self: *FakeVchan) u32 {
        return self.in.used();
    }
    pub fn data_ready(self: *FakeVchan) u32 {
        return self.in.used();
    }
    pub fn state_polled(self: *FakeVchan) State {
        return if (self.alive) .connected else .disconnected;
    }
    pub fn peer_gone_for_writing(self: *FakeVchan) bool {
        return !self.alive;
    }
    pub fn reason(self: *const FakeVchan) []const u8 {
        return if (self.alive) "" else "the model's peer died";
    }
    fn gone() diag.Fail {
        return diag.fail(.PIPE, "the model's peer died", .{});
    }
    pub fn recv(self: *FakeVchan, target: []u8) diag.Fail!u32 {
        if (self.in.used() >= target.len) return self.in.pop(target);
        return if (self.alive) 0 else gone();
    }
    pub fn read(self: *FakeVchan, target: []u8) diag.Fail!u32 {
        if (self.in.used() > 0 or target.len == 0) return self.in.pop(target);
        return if (self.alive) 0 else gone();
    }
    pub fn write(self: *FakeVchan, source: []const u8) diag.Fail!u32 {
        if (!self.alive) return gone();
        return self.out.push(source);
    }
    pub fn send(self: *FakeVchan, source: []const u8) diag.Fail!u32 {
        if (!self.alive) return gone();
        if (self.out.space() < source.len) return 0;
        return self.out.push(source);
    }
    pub fn write_window(self: *FakeVchan, skip: u32, count: u32, pieces: *Pieces) ?[]Iovec {
        if (!self.windows) return null;
        assert(skip + count <= self.out.space());
        return self.out.window(self.out.prod, skip, count, pieces);
    }
    pub fn commit_write(self: *FakeVchan, header: []const u8, count: u32) diag.Fail!void {
        if (!self.alive) return gone();
        assert(header.len + count <= self.out.space());
        var pieces: Pieces = undefined;
        var offset: usize = 0;
        for (self.out.window(self.out.prod, 0, @intCast(header.len), &pieces)) |piece| {
            @memcpy(piece.base[0..piece.len], header[offset..][0..piece.len]);
            offset += piece.len;
        }
        self.out.prod +%= @as(u32, @intCast(header.len)) + count;
    }
    pub fn read_window(self: *FakeVchan, count: u32, pieces: *Pieces) ?[]Iovec {
        if (!self.windows) return null;
        assert(count <= self.in.used());
        return self.in.window(self.in.cons, 0, count, pieces);
    }
    pub fn commit_read(self: *FakeVchan, count: u32) void {
        assert(count <= self.in.used());
        self.in.cons +%= count;
    }
};

const Bytes = std.ArrayListUnmanaged(u8);

/// Why a run failed, printed with its seed.
const Violation = error{ModelViolation};

/// The remote end: queues well-formed messages, pushes them into the ring as space allows,
/// and parses what Data sends, checking the order rules as each message arrives.
const Peer = struct {
    queued: Bytes = .{},
    received: Bytes = .{},
    /// Data bytes per type Data sent (stdin/stdout together: the local stream) and got.
    got_data: Bytes = .{},
    got_stderr: Bytes = .{},
    sent_data: Bytes = .{},
    sent_stderr: Bytes = .{},
    messages: u32 = 0,
    eof_data_at: ?u32 = null,
    eof_stderr_at: ?u32 = null,
    exit_at: ?u32 = null,
    exit_status: i32 = 0,
    first: ?struct { type: u32, len: u32 } = null,

    fn deinit(self: *Peer) void {
        const lists = .{ "queued", "received", "got_data", "got_stderr", "sent_data" };
        inline for (lists) |name| {
            @field(self, name).deinit(testing.allocator);
        }
        self.sent_stderr.deinit(testing.allocator);
    }

    fn queue(self: *Peer, msg_type: MsgType, body: []const u8) !void {
        const len: u32 = @intCast(body.len);
        const header = (protocol.Header{ .type = @intFromEnum(msg_type), .len = len }).encode();
        try self.queued.appendSlice(testing.allocator, &header);
        try self.queued.appendSlice(testing.allocator, body);
    }

    fn push(self: *Peer, vchan: *FakeVchan, limit: usize) void {
        if (!vchan.alive) return;
        const count = vchan.in.push(self.queued.items[0..@min(limit, self.queued.items.len)]);
        std.mem.copyForwards(u8, self.queued.items, self.queued.items[count..]);
        self.queued.shrinkRetainingCapacity(self.queued.items.len - count);
    }

    fn pull(self: *Peer, vchan: *FakeVchan, limit: usize) !void {
        if (!vchan.alive) return;
        var buffer: [4096]u8 = undefined;
        var left = limit;
        while (left > 0) {
            const got = vchan.out.pop(buffer[0..@min(left, buffer.len)]);
            if (got == 0) break;
            left -= got;
            try self.received.appendSlice(testing.allocator, buffer[0..got]);
        }
        while (try self.parse_one()) {}
    }

    fn parse_one(self: *Peer) !bool {
        const items = self.received.items;
        if (items.len < protocol.header_bytes) return false;
        const header = protocol.Header.decode(items[0..8].*);
        if (items.len < protocol.header_bytes + header.len) return false;
        const body = items[8..][0..header.len];
        try self.on_message(header, body);
        const taken = protocol.header_bytes + header.len;
        std.mem.copyForwards(u8, self.received.items, items[taken..]);
        self.received.shrinkRetainingCapacity(items.len - taken);
        return true;
    }

    fn on_message(self: *Peer, header: protocol.Header, body: []const u8) !void {
        const index = self.messages;
        self.messages += 1;
        if (self.first == null) self.first = .{ .type = header.type, .len = header.len };
        if (self.exit_at != null) return fault("type 0x{x} after the exit code", .{header.type});
        const msg_type: MsgType = @enumFromInt(header.type);
        switch (msg_type) {
            .data_stdin, .data_stdout => {
                if (self.eof_data_at != null) return fault("data after its EOF", .{});
                if (header.len == 0) self.eof_data_at = index;
                try self.got_data.appendSlice(testing.allocator, body);
            },
            .data_stderr => {
                if (self.eof_stderr_at != null) return fault("stderr message after its EOF", .{});
                if (header.len == 0) self.eof_stderr_at = index;
                try self.got_stderr.appendSlice(testing.allocator, body);
            },
            .data_exit_code => {
                if (body.len != 4) return fault("exit code of {d} bytes", .{body.len});
                self.exit_at = index;
                self.exit_status = std.mem.readInt(i32, body[0..4], .little);
            },
            else => return fault("unexpected message type 0x{x}", .{header.type}),
        }
    }
};

fn fault(comptime fmt: []const u8, args: anytype) Violation {
    std.debug.print("model violation: " ++ fmt ++ "\n", args);
    return error.ModelViolation;
}

/// How the service side of a run starts: a child with fds, a spawn failure (both EOFs and the
/// status, no fds), or JUST_EXEC (only the status).
const Start = enum { child, spawn_failed, just_exec };

const Model = struct {
    random: std.Random,
    is_service: bool,
    start: Start = .child,
    version: u32,
    flags: data_mod.Flags,
    vchan: FakeVchan,
    data: Data = undefined,
    buffers: []u8,
    peer: Peer = .{},
    /// The child's (or local program's / terminal's) ends of Data's local fds; -1 once closed.
    child_in: i32 = -1,
    child_out: i32 = -1,
    child_err: i32 = -1,
    remote_err: i32 = -1,
    single: bool = false,
    has_child: bool = true,
    child_exited: bool = false,
    child_saw_eof: bool = false,
    child_status: i32,
    forced_status: i32 = 0,
    prefix: []u8 = &.{},
    /// Local data the child wrote (sent by Data) and remote data it read.
    wrote_out: Bytes = .{},
    wrote_err: Bytes = .{},
    read_in: Bytes = .{},
    read_remote_err: Bytes = .{},
    peer_died: bool = false,
    peer_sent_eofs: bool = false,
    peer_sent_exit: bool = false,
    /// The peer (a service, in a client run) sends its exit code only after the client's EOF.
    peer_waits: bool,
    hold: bool,
    had_stderr_fd: bool = false,

    fn init(random: std.Random) !*Model {
        const model = try testing.allocator.create(Model);
        errdefer testing.allocator.destroy(model);
        const out_order = random.intRangeAtMost(u5, 5, 16);
        const in_order = random.intRangeAtMost(u5, 5, 16);
        const chunk = protocol.max_data_chunk_v3;
        const out_bytes = @as(usize, 1) << out_order;
        const in_bytes = @as(usize, 1) << in_order;
        const buffers = try testing.allocator.alloc(u8, out_bytes + in_bytes + 2 * chunk);
        model.* = .{
            .random = random,
            .is_service = random.boolean(),
            .version = random.intRangeAtMost(u32, protocol.version_min, protocol.version_max),
            .flags = .{},
            .vchan = .{
                .out = .{ .bytes = buffers[0..out_bytes] },
                .in = .{ .bytes = buffers[out_bytes..][0..in_bytes] },
                .windows = random.boolean(),
            },
            .buffers = buffers,
            .child_status = random.intRangeAtMost(i32, 0, 3),
            .peer_waits = random.uintLessThan(u8, 4) != 0,
            .hold = random.boolean(),
        };
        return model;
    }

    fn deinit(self: *Model) void {
        self.data.close_all();
        for ([_]i32{ self.child_in, self.child_out, self.child_err, self.remote_err }) |fd| {
            if (fd >= 0) _ = linux.close(fd);
        }
        self.peer.deinit();
        inline for (.{ "wrote_out", "wrote_err", "read_in", "read_remote_err" }) |name| {
            @field(self, name).deinit(testing.allocator);
        }
        testing.allocator.free(self.prefix);
        testing.allocator.free(self.buffers);
        testing.allocator.destroy(self);
    }

    fn setup(self: *Model) !void {
        const random = self.random;
        if (self.is_service) {
            self.flags = .{
                .stderr_eof_first = random.boolean(),
                .exit_on_client_eof = random.uintLessThan(u8, 6) == 0,
                .exit_on_service_eof = random.uintLessThan(u8, 6) == 0,
                .mirage_service = random.uintLessThan(u8, 6) == 0,
            };
            const roll = random.uintLessThan(u8, 12);
            self.start = if (roll == 0) .spawn_failed else if (roll == 1) .just_exec else .child;
        } else {
            self.flags = .{ .filter_stdout = random.boolean(), .filter_stderr = random.boolean() };
        }
        const chunk = protocol.max_data_chunk_v3;
        const backlog = self.buffers[self.buffers.len - 2 * chunk ..][0..chunk];
        const scratch = self.buffers[self.buffers.len - chunk ..];
        self.data = Data.init(&self.vchan, self.is_service, self.flags, backlog, scratch);
        self.data.start(self.version);
        // Prefix data is a caller's (qrexec-client's local command line for the service).
        if (!self.is_service and random.uintLessThan(u8, 4) == 0) {
            const len = random.uintAtMost(usize, 3 * self.data.max_chunk);
            self.prefix = try testing.allocator.alloc(u8, len);
            random.bytes(self.prefix);
            self.data.prefix = self.prefix;
        }
        switch (self.start) {
            .child => try self.make_fds(),
            .spawn_failed, .just_exec => {
                self.forced_status = if (self.start == .spawn_failed) 127 else 0;
                self.data.finish_with(self.forced_status, self.start == .spawn_failed);
                self.has_child = false;
            },
        }
    }

    fn make_fds(self: *Model) !void {
        const random = self.random;
        var stderr_pipe: [2]i32 = .{ -1, -1 };
        if (self.is_service) {
            const stdin_pair = try socket_pair(linux.SOCK.NONBLOCK);
            const socket = random.boolean();
            const stdout_pair = if (socket) try socket_pair(linux.SOCK.NONBLOCK) else try pipe();
            if (random.boolean()) stderr_pipe = try pipe();
            self.data.set_fds(stdin_pair[0], stdout_pair[0], stderr_pipe[0], true);
            self.child_in = stdin_pair[1];
            self.child_out = stdout_pair[1];
            self.child_err = stderr_pipe[1];
            self.had_stderr_fd = stderr_pipe[0] >= 0;
        } else {
            self.has_child = random.boolean();
            self.single = random.uintLessThan(u8, 4) == 0;
            const err_pipe = try pipe();
            // A big pipe: remote stderr is written with a bounded blocking wait (it is rare).
            _ = linux.fcntl(err_pipe[1], f_setpipe_sz, 1 << 20);
            self.data.remote_stderr_fd = err_pipe[1];
            self.remote_err = err_pipe[0];
            if (self.single) {
                const stdin_pair = try socket_pair(linux.SOCK.NONBLOCK);
                self.data.set_fds(stdin_pair[0], stdin_pair[0], -1, self.has_child);
                self.child_in = stdin_pair[1];
                self.child_out = try dup(stdin_pair[1]);
            } else {
                const out_pipe = try pipe();
                const in_pipe = try pipe();
                self.data.set_fds(out_pipe[1], in_pipe[0], -1, self.has_child);
                self.child_in = out_pipe[0];
                self.child_out = in_pipe[1];
            }
        }
    }

    // ------------------------------------------------------------ the pump's side

    /// One turn of the pump: poll the fds Data asks for (never waiting), then step it.
    /// Returns whether there was anything to do.
    fn pump(self: *Model, spurious: bool) !bool {
        self.data.hold_stdout_eof = self.hold and self.has_child;
        const interest = self.data.interest();
        var fds: [3]linux.pollfd = undefined;
        var count: usize = 0;
        const wanted = [_]struct { fd: i32, events: i16, add: bool }{
            .{ .fd = self.data.stdin_fd, .events = interest.stdin, .add = self.data.stdin_fd >= 0 },
            .{ .fd = self.data.stdout_fd, .events = interest.stdout, .add = interest.stdout != 0 },
            .{ .fd = self.data.stderr_fd, .events = interest.stderr, .add = interest.stderr != 0 },
        };
        var slot: [3]?usize = .{ null, null, null };
        for (wanted, 0..) |entry, index| {
            if (!entry.add or entry.fd < 0) continue;
            fds[count] = .{ .fd = entry.fd, .events = entry.events, .revents = 0 };
            slot[index] = count;
            count += 1;
        }
        const ready = linux.poll(&fds, count, 0);
        var revents: [3]i16 = .{ 0, 0, 0 };
        for (slot, 0..) |maybe, index| {
            if (maybe) |at| revents[index] = fds[at].revents;
        }
        const busy = interest.immediate or self.vchan.kicked or
            (linux.E.init(ready) == .SUCCESS and ready > 0);
        if (busy) self.vchan.kicked = false;
        if (busy or (spurious and self.random.uintLessThan(u8, 8) == 0)) {
            self.data.step(revents[0], revents[1], revents[2]);
        }
        if (self.data.stdout == .eof_held and self.random.uintLessThan(u8, 3) == 0) {
            self.data.release_stdout_eof();
        }
        return busy;
    }

    // ------------------------------------------------------------ the child's side

    fn child_write(self: *Model, fd: i32, record: *Bytes) !void {
        if (fd < 0) return;
        var buffer: [70000]u8 = undefined;
        const count = if (self.random.uintLessThan(u8, 8) == 0)
            self.random.uintAtMost(usize, buffer.len)
        else
            self.random.uintAtMost(usize, 600);
        self.random.bytes(buffer[0..count]);
        const rc = linux.write(fd, &buffer, count);
        if (linux.E.init(rc) != .SUCCESS) return;
        try record.appendSlice(testing.allocator, buffer[0..rc]);
    }

    /// Reads what is there; true when something was read.
    fn drain(fd: *i32, record: *Bytes, eof: ?*bool) !bool {
        if (fd.* < 0) return false;
        var buffer: [65536]u8 = undefined;
        var any = false;
        while (true) {
            const rc = linux.read(fd.*, &buffer, buffer.len);
            switch (linux.E.init(rc)) {
                .SUCCESS => {},
                .AGAIN => return any,
                // Data closed a socket holding what the child wrote to it and nobody read
                // (single-socket mode): the end, as for the real child.
                .CONNRESET => {},
                else => return fault("read from a local fd: {s}", .{@tagName(linux.E.init(rc))}),
            }
            if (rc == 0 or linux.E.init(rc) == .CONNRESET) {
                if (eof) |flag| flag.* = true;
                return any;
            }
            any = true;
            try record.appendSlice(testing.allocator, buffer[0..rc]);
        }
    }

    fn close_child_out(self: *Model) void {
        if (self.child_out < 0) return;
        if (self.single) _ = linux.shutdown(self.child_out, linux.SHUT.WR);
        _ = linux.close(self.child_out);
        self.child_out = -1;
    }

    fn child_exit(self: *Model) void {
        if (!self.has_child or self.child_exited) return;
        self.close_child_out();
        if (self.child_err >= 0) _ = linux.close(self.child_err);
        self.child_err = -1;
        if (self.child_in >= 0) _ = linux.close(self.child_in);
        self.child_in = -1;
        self.child_exited = true;
        self.data.on_local_exit(self.child_status);
    }

    // ------------------------------------------------------------ the peer's side

    fn peer_data(self: *Model, stderr: bool) !void {
        if (self.peer_sent_eofs or self.peer_died) return;
        if (stderr and self.is_service) return;
        var buffer: [65536]u8 = undefined;
        const max = self.data.max_chunk;
        const small = self.random.intRangeAtMost(u32, 1, @min(max, 700));
        const count = if (self.random.uintLessThan(u8, 8) == 0) max else small;
        self.random.bytes(buffer[0..count]);
        const local: MsgType = if (self.is_service) .data_stdin else .data_stdout;
        const msg_type: MsgType = if (stderr) .data_stderr else local;
        try self.peer.queue(msg_type, buffer[0..count]);
        const record = if (stderr) &self.peer.sent_stderr else &self.peer.sent_data;
        try record.appendSlice(testing.allocator, buffer[0..count]);
    }

    fn peer_eofs(self: *Model) !void {
        if (self.peer_sent_eofs or self.peer_died) return;
        self.peer_sent_eofs = true;
        if (self.is_service) return self.peer.queue(.data_stdin, "");
        try self.peer.queue(.data_stdout, "");
        try self.peer.queue(.data_stderr, "");
    }

    fn peer_exit(self: *Model) !void {
        if (self.is_service or self.peer_sent_exit or self.peer_died) return;
        if (!self.peer_sent_eofs) return;
        if (self.peer_waits and self.peer.eof_data_at == null) return;
        self.peer_sent_exit = true;
        var status: [4]u8 = undefined;
        std.mem.writeInt(i32, &status, self.child_status, .little);
        try self.peer.queue(.data_exit_code, &status);
    }

    fn exchange(self: *Model, limit: usize) !bool {
        const before = .{ self.vchan.in.prod, self.vchan.out.cons };
        self.peer.push(&self.vchan, limit);
        try self.peer.pull(&self.vchan, limit);
        const moved = before[0] != self.vchan.in.prod or before[1] != self.vchan.out.cons;
        if (moved) self.vchan.kicked = true;
        return moved;
    }

    // ------------------------------------------------------------ a run

    fn act(self: *Model) !void {
        const random = self.random;
        switch (random.uintLessThan(u8, 16)) {
            0, 1, 2, 3 => _ = try self.pump(true),
            4 => try self.child_write(self.child_out, &self.wrote_out),
            5 => try self.child_write(self.child_err, &self.wrote_err),
            6 => if (random.uintLessThan(u8, 4) == 0) self.close_child_out(),
            7 => if (random.uintLessThan(u8, 4) == 0 and self.child_err >= 0) {
                _ = linux.close(self.child_err);
                self.child_err = -1;
            },
            8 => _ = try drain(&self.child_in, &self.read_in, &self.child_saw_eof),
            9 => if (random.uintLessThan(u8, 16) == 0) self.child_exit(),
            10 => try self.peer_data(random.uintLessThan(u8, 4) == 0),
            11 => if (random.uintLessThan(u8, 8) == 0) try self.peer_eofs(),
            12 => try self.peer_exit(),
            13, 14 => _ = try self.exchange(random.uintAtMost(usize, 1 << 17)),
            15 => if (random.uintLessThan(u8, 64) == 0) {
                self.vchan.alive = false;
                self.vchan.kicked = true;
                self.peer_died = true;
            },
            else => unreachable,
        }
    }

    /// Everything around the stream ends: the child reads its input to the end (when it was
    /// going to), closes its output and exits; the peer finishes its side. The stream must
    /// then end too, without anything from outside waking it.
    fn wind_down(self: *Model) !void {
        const reads_all = self.random.boolean();
        var idle: u32 = 0;
        var turns: u32 = 0;
        while (self.data.outcome() == null) : (turns += 1) {
            if (turns > 200_000) return fault("no outcome after {d} turns", .{turns});
            self.close_child_out();
            if (self.child_err >= 0) _ = linux.close(self.child_err);
            self.child_err = -1;
            try self.peer_eofs();
            try self.peer_exit();
            var moved = try self.exchange(1 << 20);
            moved = try drain(&self.child_in, &self.read_in, &self.child_saw_eof) or moved;
            moved = try drain(&self.remote_err, &self.read_remote_err, null) or moved;
            if (!reads_all or self.child_saw_eof or self.peer_died) self.child_exit();
            if (self.data.stdout == .eof_held) self.data.release_stdout_eof();
            moved = try self.pump(false) or moved;
            idle = if (moved) 0 else idle + 1;
            if (idle > 64) return fault("the stream sleeps with nothing to wake it", .{});
        }
        // What is still in the rings and pipes.
        _ = try self.exchange(1 << 30);
        _ = try drain(&self.child_in, &self.read_in, &self.child_saw_eof);
        _ = try drain(&self.remote_err, &self.read_remote_err, null);
    }

    fn run(self: *Model) !void {
        try self.setup();
        const actions = self.random.intRangeAtMost(u32, 0, 600);
        var index: u32 = 0;
        while (index < actions and self.data.outcome() == null) : (index += 1) try self.act();
        try self.wind_down();
        try self.check_order();
        try self.check_bytes();
        try self.check_status();
    }

    fn describe(self: *const Model) void {
        const data = &self.data;
        std.debug.print("data model run: service={} start={s} version={d} rings out={d} in={d} " ++
            "windows={}\n  flags={any}\n", .{
            self.is_service,          @tagName(self.start),    self.version,
            self.vchan.out.bytes.len, self.vchan.in.bytes.len, self.vchan.windows,
            self.flags,
        });
        std.debug.print("  single={} has_child={} hold={} child_exited={} saw_eof={} " ++
            "peer_died={} peer eofs={} exit={} waits={} messages={d} queued={d}\n", .{
            self.single,         self.has_child,             self.hold,
            self.child_exited,   self.child_saw_eof,         self.peer_died,
            self.peer_sent_eofs, self.peer_sent_exit,        self.peer_waits,
            self.peer.messages,  self.peer.queued.items.len,
        });
        std.debug.print("  data: phase={s} stdin={s} stdout={s} stderr={s} exit={any} " ++
            "order={s} sockets={s}\n", .{
            @tagName(data.phase),   @tagName(data.stdin), @tagName(data.stdout),
            @tagName(data.stderr),  data.exit,            @tagName(data.eof_order),
            @tagName(data.sockets),
        });
        std.debug.print("  fds {d} {d} {d} saved={d} backlog={d} message={any} local={?d} " ++
            "remote={?d} rings in={d} out={d} gathered={d}\n", .{
            data.stdin_fd,         data.stdout_fd,                        data.stderr_fd,
            data.saved_stdin_fd,   data.backlog_end - data.backlog_start, data.message,
            data.local_status,     data.remote_status,                    self.vchan.in.used(),
            self.vchan.out.used(), data.gathered_len,
        });
    }

    // ------------------------------------------------------------ the properties

    fn check_order(self: *Model) !void {
        const peer = &self.peer;
        const done = self.data.outcome().? == .done;
        if (!self.is_service) {
            if (peer.exit_at != null) return fault("a client sent an exit code", .{});
            const stderr = peer.got_stderr.items.len > 0 or peer.eof_stderr_at != null;
            if (stderr) return fault("a client sent stderr", .{});
            return;
        }
        if (self.peer_died or !done) return;
        // The peer saw everything: the exit code, last (checked on arrival), exactly once.
        const exit_at = peer.exit_at orelse return fault("the service sent no exit code", .{});
        if (exit_at + 1 != peer.messages) return fault("messages after the exit code", .{});
        const eofs = self.start != .just_exec;
        if (self.flags.mirage_service) {
            if (peer.eof_stderr_at != null) return fault("mirage-qubes sent stderr EOF", .{});
            if (eofs and peer.eof_data_at != exit_at - 1) {
                return fault("mirage stdout EOF not right before the exit code", .{});
            }
            return;
        }
        if (!eofs) {
            if (peer.messages != 1) return fault("JUST_EXEC sent more than its exit code", .{});
            return;
        }
        const eof_missing = peer.eof_data_at == null or peer.eof_stderr_at == null;
        if (eof_missing) return fault("an EOF is missing", .{});
        // stderr's EOF leads where there is no stderr (§6.2 step 1); a failed spawn sends
        // stdout's first unless told otherwise (§5.9).
        const first = peer.first.?;
        const stderr_leads = switch (self.start) {
            .child => !self.had_stderr_fd,
            .spawn_failed => self.flags.stderr_eof_first,
            .just_exec => unreachable,
        };
        const stdout_leads = self.start == .spawn_failed and !self.flags.stderr_eof_first;
        const leader: MsgType = if (stderr_leads) .data_stderr else .data_stdout;
        const wrong = first.type != @intFromEnum(leader) or first.len != 0;
        if ((stderr_leads or stdout_leads) and wrong) {
            const args = .{ first.type, first.len, @tagName(leader) };
            return fault("first message type 0x{x} length {d}, expected {s} EOF", args);
        }
    }

    fn check_bytes(self: *Model) !void {
        const peer = &self.peer;
        // Local -> remote: the prefix, then what the child wrote.
        var expected: Bytes = .{};
        defer expected.deinit(testing.allocator);
        try expected.appendSlice(testing.allocator, self.prefix);
        try expected.appendSlice(testing.allocator, self.wrote_out.items);
        const cut = self.flags.exit_on_client_eof or (!self.is_service and !self.peer_waits);
        const full_out = !self.peer_died and self.start == .child and !cut and
            self.data.outcome().? == .done;
        try expect_bytes("local data to the peer", expected.items, peer.got_data.items, full_out);
        if (self.is_service) {
            const got = peer.got_stderr.items;
            try expect_bytes("stderr to the peer", self.wrote_err.items, got, full_out);
        }
        // Remote -> local, filtered as the client's -t/-T say.
        const sent = try testing.allocator.dupe(u8, peer.sent_data.items);
        defer testing.allocator.free(sent);
        if (!self.is_service and self.flags.filter_stdout) data_mod.filter(sent);
        const full_in = !self.peer_died and self.child_saw_eof and !self.flags.exit_on_service_eof;
        try expect_bytes("remote data to the child", sent, self.read_in.items, full_in);
        if (!self.is_service) {
            const sent_err = try testing.allocator.dupe(u8, peer.sent_stderr.items);
            defer testing.allocator.free(sent_err);
            if (self.flags.filter_stderr) data_mod.filter(sent_err);
            const got = self.read_remote_err.items;
            try expect_bytes("remote stderr", sent_err, got, !self.peer_died);
        }
    }

    fn check_status(self: *Model) !void {
        const outcome = self.data.outcome().?;
        if (self.peer_died) return;
        const status = switch (outcome) {
            .done => |status| status,
            .failed => |failure| return fault("failed, peer alive: {s}", .{failure.message}),
        };
        const expected: i32 = switch (self.start) {
            .child => self.child_status,
            .spawn_failed, .just_exec => self.forced_status,
        };
        if (status != expected) return fault("status {d}, expected {d}", .{ status, expected });
        const sent = self.peer.exit_status;
        if (self.is_service and sent != expected) {
            return fault("exit code {d} sent, expected {d}", .{ sent, expected });
        }
    }
};

fn expect_bytes(what: []const u8, sent: []const u8, got: []const u8, whole: bool) !void {
    if (got.len > sent.len or !std.mem.eql(u8, sent[0..got.len], got)) {
        const args = .{ what, got.len, sent.len };
        return fault("{s}: {d} bytes arrived that are not a prefix of the {d} sent", args);
    }
    const args = .{ what, got.len, sent.len };
    if (whole and got.len != sent.len) return fault("{s}: {d} of {d} bytes arrived", args);
}

fn check(rc: usize) !void {
    if (linux.E.init(rc) != .SUCCESS) return error.Unexpected;
}

fn socket_pair(flags: i32) ![2]i32 {
    var pair: [2]i32 = undefined;
    const kind = linux.SOCK.STREAM | linux.SOCK.CLOEXEC | flags;
    try check(linux.socketpair(linux.AF.UNIX, kind, 0, &pair));
    return pair;
}

fn pipe() ![2]i32 {
    var pair: [2]i32 = undefined;
    try check(linux.pipe2(&pair, .{ .NONBLOCK = true, .CLOEXEC = true }));
    return pair;
}

fn dup(fd: i32) !i32 {
    const rc = linux.dup(fd);
    try check(rc);
    return @intCast(rc);
}

/// Writes to a local fd whose reader is gone must fail with EPIPE, as in the pump thread.
fn ignore_sigpipe() void {
    const action = linux.Sigaction{
        .handler = .{ .handler = linux.SIG.IGN },
        .mask = linux.empty_sigset,
        .flags = 0,
    };
    _ = linux.sigaction(linux.SIG.PIPE, &action, null);
}

fn run_seed(seed: u64) !void {
    var prng = std.Random.DefaultPrng.init(seed);
    const model = try Model.init(prng.random());
    defer model.deinit();
    model.run() catch |err| {
        model.describe();
        const args = .{ seed, @errorName(err), seed };
        std.debug.print("data model: seed {d} failed ({s}); replay: " ++
            "zig build model -Dseed={d} -Dseconds=0\n", args);
        return err;
    };
}

fn env_u64(name: []const u8) ?u64 {
    const text = std.posix.getenv(name) orelse return null;
    return std.fmt.parseInt(u64, text, 10) catch null;
}

test "data model: random interleavings keep bytes, EOFs and the exit code in order" {
    ignore_sigpipe();
    // Fixed in `zig build test`; QRX_MODEL_SEED / QRX_MODEL_SECONDS for longer, random runs.
    const seconds = env_u64("QRX_MODEL_SECONDS");
    const fixed: u64 = if (seconds != null) std.crypto.random.int(u64) else 0x51ed_da7a;
    const seed = env_u64("QRX_MODEL_SEED") orelse fixed;
    if (seconds) |limit| std.debug.print("data model: seed {d}, {d} s\n", .{ seed, limit });
    const deadline = std.time.milliTimestamp() + @as(i64, @intCast(seconds orelse 0)) * 1000;
    var runs: u64 = 0;
    const fixed_runs: u64 = if (seconds == null) 100 else 1;
    while (runs < fixed_runs or std.time.milliTimestamp() < deadline) : (runs += 1) {
        try run_seed(seed +% runs);
    }
    if (seconds != null) std.debug.print("data model: {d} runs passed\n", .{runs});
}

test "data: a service whose caller left before its exit code fits still finishes" {
    // Found by the model: with the peer gone, the exit code never fits, `finish` waited for
    // ring space for ever and `interest` said `immediate` each time, so the pump thread spun.
    ignore_sigpipe();
    var rings: [2][64]u8 = undefined;
    var vchan = FakeVchan{
        .out = .{ .bytes = &rings[0] },
        .in = .{ .bytes = &rings[1] },
        .windows = true,
    };
    const buffers = try testing.allocator.alloc(u8, 2 * protocol.max_data_chunk_v3);
    defer testing.allocator.free(buffers);
    const chunk = protocol.max_data_chunk_v3;
    var data = Data.init(&vchan, true, .{}, buffers[0..chunk], buffers[chunk..]);
    defer data.close_all();
    data.start(protocol.version_max);
    const stdin_pair = try socket_pair(0);
    defer _ = linux.close(stdin_pair[1]);
    const stdout_pair = try socket_pair(0);
    data.set_fds(stdin_pair[0], stdout_pair[0], -1, true);
    // The service ends its output; both EOFs go out.
    _ = linux.close(stdout_pair[1]);
    data.step(0, linux.POLL.IN, 0);
    try testing.expectEqual(data_mod.Stdout.eof_sent, data.stdout);
    try testing.expectEqual(data_mod.Stderr.eof_sent, data.stderr);
    // The caller leaves, then the service exits.
    vchan.alive = false;
    data.on_local_exit(7);
    data.step(0, 0, 0);
    try testing.expectEqual(@as(?data_mod.Outcome, .{ .done = 7 }), data.outcome());
    try testing.expect(!data.interest().immediate);
}

test "data: a service waiting for room for its exit code sleeps until the caller reads" {
    // `interest` said `immediate` whenever the stream was ready to finish, room or not: a
    // caller that stopped reading with the ring full made the pump thread spin.
    ignore_sigpipe();
    var rings: [2][64]u8 = undefined;
    var vchan = FakeVchan{
        .out = .{ .bytes = &rings[0] },
        .in = .{ .bytes = &rings[1] },
        .windows = true,
    };
    const buffers = try testing.allocator.alloc(u8, 2 * protocol.max_data_chunk_v3);
    defer testing.allocator.free(buffers);
    const chunk = protocol.max_data_chunk_v3;
    var data = Data.init(&vchan, true, .{}, buffers[0..chunk], buffers[chunk..]);
    defer data.close_all();
    data.start(protocol.version_max);
    const stdin_pair = try socket_pair(0);
    defer _ = linux.close(stdin_pair[1]);
    const stdout_pair = try socket_pair(0);
    data.set_fds(stdin_pair[0], stdout_pair[0], -1, true);
    // stderr's EOF (8 bytes), 32 bytes of output (40), stdout's EOF (8): 8 bytes are left,
    // too few for the exit code.
    const output = "0123456789abcdef" ** 2;
    try testing.expectEqual(output.len, linux.write(stdout_pair[1], output, output.len));
    _ = linux.close(stdout_pair[1]);
    data.step(0, linux.POLL.IN, 0);
    try testing.expectEqual(data_mod.Stdout.eof_sent, data.stdout);
    try testing.expectEqual(@as(u32, 8), vchan.out.space());
    data.on_local_exit(3);
    data.step(0, 0, 0);
    try testing.expect(data.outcome() == null);
    try testing.expect(!data.interest().immediate);
    // The caller reads: now the exit code goes out.
    vchan.out.cons +%= 56;
    try testing.expect(data.interest().immediate);
    data.step(0, 0, 0);
    try testing.expectEqual(@as(?data_mod.Outcome, .{ .done = 3 }), data.outcome());
    try testing.expectEqual(@as(u32, protocol.exit_code_bytes), vchan.out.used());
}

test "data: a caller's stream ends when its peer died in the middle of a header" {
    // Found by the model: step 4 waited for an empty ring, and the 5 bytes of a header a dead
    // peer left behind never go: the stream slept for ever.
    ignore_sigpipe();
    var rings: [2][64]u8 = undefined;
    var vchan = FakeVchan{
        .out = .{ .bytes = &rings[0] },
        .in = .{ .bytes = &rings[1] },
        .windows = true,
    };
    const buffers = try testing.allocator.alloc(u8, 2 * protocol.max_data_chunk_v3);
    defer testing.allocator.free(buffers);
    const chunk = protocol.max_data_chunk_v3;
    var data = Data.init(&vchan, false, .{}, buffers[0..chunk], buffers[chunk..]);
    defer data.close_all();
    data.start(protocol.version_max);
    const output = try pipe();
    defer _ = linux.close(output[0]);
    const input = try pipe();
    defer _ = linux.close(input[1]);
    data.set_fds(output[1], input[0], -1, false);
    _ = vchan.in.push("\x01\x01\x00\x00\x05");
    vchan.alive = false;
    data.step(0, 0, 0);
    try testing.expectEqual(@as(?data_mod.Outcome, .{ .done = -1 }), data.outcome());
}

//! The agent's side of the client-host socket (wire.zig): a thread that accepts front ends,
//! receives their requests with the fds that come along (Bun cannot take SCM_RIGHTS), and
//! reports to JavaScript through the pump's event queue: a complete request, each SIGUSR1 byte,
//! and a front end that went away. JS answers with `reply`. The thread never blocks on a peer:
//! every socket is non-blocking and a request must be complete within `request_timeout_ms`.
const std = @import("std");
const linux = std.os.linux;
const assert = std.debug.assert;

const diag = @import("../diag.zig");
const sys = @import("../sys.zig");
const events = @import("../pump/events.zig");
const wire = @import("wire.zig");

const Fail = diag.Fail;

pub const connections_max = 256;
const request_timeout_ms = 5_000;
const accept_pause_ms = 100;
const slot_bits = 8;
comptime {
    assert(connections_max == 1 << slot_bits);
}

/// Bytes before the payload in a `client_request` record: the three fds, argc and envc.
pub const request_record_prefix_bytes: u32 = 20;

/// Where reports go: the pump's queue, under the pump's lock (zig/pump/pump.zig `report`).
pub const Reporter = struct {
    context: *anyopaque,
    report: *const fn (
        context: *anyopaque,
        id: u32,
        kind: events.Kind,
        value: i32,
        payload: []const u8,
    ) void,
};

/// What a complete header says to do.
pub const HeaderVerdict = enum { read_payload, fallback, reject };

pub fn judge_header(header: wire.RequestHeader, fds_received: u32) HeaderVerdict {
    if (header.magic != wire.magic) return .reject;
    // A front end of another build: the Bun CLI is always right.
    if (header.version != wire.version) return .fallback;
    if (fds_received != wire.passed_fds) return .reject;
    if (header.payload_bytes > wire.payload_bytes_max) return .reject;
    // Every string takes at least its NUL.
    if (@as(u64, header.argc) + header.envc > header.payload_bytes) return .reject;
    return .read_payload;
}

/// The payload holds exactly argc + envc NUL-terminated strings.
pub fn payload_valid(header: wire.RequestHeader, payload: []const u8) bool {
    assert(payload.len == header.payload_bytes);
    if (payload.len > 0 and payload[payload.len - 1] != 0) return false;
    return std.mem.count(u8, payload, &.{0}) == @as(usize, header.argc) + header.envc;
}

const Phase = enum { header, payload, handed, closing };

/// Where a call's local program stands: the front end may send each `LocalTag` record only
/// in its turn, once.
pub const LocalState = enum { none, asked, started, ended };

pub const Record = union(enum) {
    signal,
    /// The answer to `sync`.
    synced,
    /// A pid; the fds came with it.
    started: i32,
    /// An errno.
    failed: i32,
    /// A status.
    exited: i32,
};

pub const RecordVerdict = union(enum) {
    record: struct { record: Record, len: usize },
    /// A tag whose value is still to come.
    incomplete,
    /// Out of turn, malformed or unknown: the front end is hung up on.
    hostile,
};

/// The front end record at the start of `bytes` (not empty), in local state `state`;
/// `with_fds`: the read that brought these bytes carried exactly the fds `started` needs.
pub fn next_record(bytes: []const u8, state: LocalState, with_fds: bool) RecordVerdict {
    assert(bytes.len > 0);
    if (bytes[0] == wire.signal_byte) return .{ .record = .{ .record = .signal, .len = 1 } };
    const tag = std.meta.intToEnum(wire.LocalTag, bytes[0]) catch return .hostile;
    // A `sync` may find the program running or ended; the other records have one turn each.
    const in_turn = switch (tag) {
        .synced => state == .started or state == .ended,
        .exited => state == .started,
        .started, .failed => state == .asked,
    };
    if (!in_turn) return .hostile;
    // The fds come with the first byte of the one send that holds the whole record.
    if (tag == .started and (!with_fds or bytes.len < wire.local_record_bytes_max)) return .hostile;
    if (bytes.len < wire.local_record_bytes_max) return .incomplete;
    const value = std.mem.readInt(i32, bytes[1..5], .little);
    const record: Record = switch (tag) {
        .started => if (value >= 1) .{ .started = value } else return .hostile,
        .failed => if (value >= 1 and value <= 4095) .{ .failed = value } else return .hostile,
        .exited => if (value >= 0 and value <= 255) .{ .exited = value } else return .hostile,
        .synced => if (value == 0) .synced else return .hostile,
    };
    return .{ .record = .{ .record = record, .len = wire.local_record_bytes_max } };
}

const Connection = struct {
    fd: i32,
    phase: Phase = .header,
    deadline_ns: u64,
    header: wire.RequestHeader = undefined,
    header_got: u32 = 0,
    fds: [wire.passed_fds]i32 = .{ -1, -1, -1 },
    fds_received: u32 = 0,
    /// The request record being assembled: prefix, then the payload.
    record: []u8 = &.{},
    payload_got: u32 = 0,
    local: LocalState = .none,
    /// The start of a front end record cut by a read, kept for the next one.
    partial: [wire.local_record_bytes_max]u8 = undefined,
    partial_len: u8 = 0,

    fn release_fds(self: *Connection) void {
        for (&self.fds) |*fd| {
            sys.close(fd.*);
            fd.* = -1;
        }
        self.fds_received = 0;
    }
};

pub const Listener = struct {
    mutex: std.Thread.Mutex = .{},
    thread: ?std.Thread = null,
    reporter: Reporter = undefined,
    wake_fd: i32 = -1,
    listen_fd: i32 = -1,
    connections: [connections_max]?*Connection = [_]?*Connection{null} ** connections_max,
    generations: [connections_max]u32 = [_]u32{0} ** connections_max,
    count: u32 = 0,
    /// After accept4 failed for want of fds or memory, the listener (still readable) is left
    /// out of the poll set until then, instead of spinning.
    accept_paused_until_ns: u64 = 0,

    /// Binds `path` (replacing a stale socket) and starts the thread. One per process.
    pub fn listen(self: *Listener, path: []const u8, reporter: Reporter) Fail!void {
        if (self.listen_fd >= 0) return diag.fail(.BUSY, "the client host already listens", .{});
        var address = linux.sockaddr.un{ .family = linux.AF.UNIX, .path = [_]u8{0} ** 108 };
        const has_nul = std.mem.indexOfScalar(u8, path, 0) != null;
        if (path.len == 0 or path.len >= address.path.len or has_nul) {
            return diag.fail(
                .NAMETOOLONG,
                "client host socket path must be 1-107 bytes without NUL",
                .{},
            );
        }
        @memcpy(address.path[0..path.len], path);
        const socket = try sys.fd(
            linux.socket(
                linux.AF.UNIX,
                linux.SOCK.STREAM | linux.SOCK.CLOEXEC | linux.SOCK.NONBLOCK,
                0,
            ),
            "socket(AF_UNIX)",
        );
        errdefer sys.close(socket);
        const path_z: [*:0]const u8 = @ptrCast(&address.path);
        _ = linux.unlink(path_z);
        _ = try sys.check(
            linux.bind(socket, @ptrCast(&address), @sizeOf(linux.sockaddr.un)),
            "bind client host socket",
        );
        _ = try sys.check(linux.listen(socket, 128), "listen");
        self.wake_fd = try sys.fd(
            linux.eventfd(0, linux.EFD.CLOEXEC | linux.EFD.NONBLOCK),
            "eventfd",
        );
        errdefer sys.close(self.wake_fd);
        self.reporter = reporter;
        self.listen_fd = socket;
        self.thread = std.Thread.spawn(.{}, run, .{self}) catch {
            self.listen_fd = -1;
            return diag.fail(.AGAIN, "cannot start the client host thread", .{});
        };
    }

    /// Answers connection `id` (any thread). `accepted`, `start_local` and `sync` keep it open
    /// for the final `exit`.
    pub fn reply(self: *Listener, id: u32, kind: wire.ReplyKind, value: i32) Fail!void {
        assert(kind != .message);
        self.mutex.lock();
        defer self.mutex.unlock();
        const connection = try self.waiting(id);
        if (kind == .start_local) {
            if (connection.local != .none) return diag.fail(
                .INVAL,
                "client connection {d} was already told to start its program",
                .{id},
            );
            connection.local = .asked;
        }
        try self.answer(connection, kind, value, "");
        if (kind != .accepted and kind != .start_local and kind != .sync) {
            connection.phase = .closing;
            self.wake();
        }
    }

    /// Sends connection `id` the text of a `message` reply (any thread); it stays open.
    pub fn send_message(self: *Listener, id: u32, text: []const u8) Fail!void {
        if (text.len == 0 or text.len > wire.message_bytes_max) return diag.fail(
            .INVAL,
            "a message is 1 to {d} bytes",
            .{wire.message_bytes_max},
        );
        self.mutex.lock();
        defer self.mutex.unlock();
        try self.answer(try self.waiting(id), .message, @intCast(text.len), text);
    }

    /// Connection `id`, handed to JS and not answered for good yet (the caller holds the lock).
    fn waiting(self: *Listener, id: u32) Fail!*Connection {
        const connection = self.lookup(id) orelse return diag.fail(
            .BADF,
            "client connection {d} is gone",
            .{id},
        );
        if (connection.phase != .handed) return diag.fail(
            .BADF,
            "client connection {d} is not waiting for a reply",
            .{id},
        );
        return connection;
    }

    /// One reply and the text after it, in one send: a short one would leave the front end
    /// waiting for the rest for ever, so it is hung up on instead (it exits 255).
    fn answer(
        self: *Listener,
        connection: *Connection,
        kind: wire.ReplyKind,
        value: i32,
        text: []const u8,
    ) Fail!void {
        assert(text.len <= wire.message_bytes_max);
        var bytes: [@sizeOf(wire.Reply) + wire.message_bytes_max]u8 = undefined;
        const header = wire.Reply{ .kind = @intFromEnum(kind), .value = value };
        @memcpy(bytes[0..@sizeOf(wire.Reply)], std.mem.asBytes(&header));
        @memcpy(bytes[@sizeOf(wire.Reply)..][0..text.len], text);
        const total = @sizeOf(wire.Reply) + text.len;
        const flags = linux.MSG.NOSIGNAL | linux.MSG.DONTWAIT;
        const rc = linux.sendto(connection.fd, &bytes, total, flags, null, 0);
        if (sys.errno_of(rc) == .SUCCESS and rc == total) return;
        connection.phase = .closing;
        self.wake();
        return diag.fail(.PIPE, "client connection: the reply could not be written", .{});
    }

    fn wake(self: *Listener) void {
        const one: u64 = 1;
        _ = linux.write(self.wake_fd, std.mem.asBytes(&one), 8);
    }

    fn lookup(self: *Listener, id: u32) ?*Connection {
        const slot = id & (connections_max - 1);
        if (self.generations[slot] != id >> slot_bits) return null;
        return self.connections[slot];
    }

    fn id_of(self: *Listener, slot: usize) u32 {
        return (self.generations[slot] << slot_bits) | @as(u32, @intCast(slot));
    }

    // ------------------------------------------------------------ the thread

    fn run(self: *Listener) void {
        var pollfds: [2 + connections_max]linux.pollfd = undefined;
        var slots: [2 + connections_max]usize = undefined;
        while (true) {
            self.mutex.lock();
            var count: usize = 0;
            pollfds[count] = .{ .fd = self.wake_fd, .events = linux.POLL.IN, .revents = 0 };
            count += 1;
            const now = sys.now_ns();
            var timeout_ms: i32 = -1;
            // Full: new front ends wait in the backlog.
            if (self.count < connections_max and now >= self.accept_paused_until_ns) {
                pollfds[count] = .{ .fd = self.listen_fd, .events = linux.POLL.IN, .revents = 0 };
                count += 1;
            } else if (now < self.accept_paused_until_ns) {
                timeout_ms = sys.ms_until(self.accept_paused_until_ns, now);
            }
            const fixed = count;
            for (self.connections, 0..) |maybe, slot| {
                const connection = maybe orelse continue;
                if (connection.phase == .closing) continue;
                pollfds[count] = .{ .fd = connection.fd, .events = linux.POLL.IN, .revents = 0 };
                slots[count] = slot;
                count += 1;
                if (connection.phase == .header or connection.phase == .payload) {
                    const left_ms = sys.ms_until(connection.deadline_ns, now);
                    timeout_ms = if (timeout_ms < 0) left_ms else @min(timeout_ms, left_ms);
                }
            }
            self.mutex.unlock();

            _ = linux.poll(&pollfds, count, timeout_ms);

            self.mutex.lock();
            defer self.mutex.unlock();
            sys.drain(self.wake_fd);
            if (fixed == 2 and pollfds[1].revents != 0) self.accept_all();
            for (pollfds[fixed..count], slots[fixed..count]) |pollfd, slot| {
                if (pollfd.revents == 0) continue;
                const connection = self.connections[slot] orelse continue;
                if (connection.fd != pollfd.fd) continue;
                self.serve(slot, connection);
            }
            const later = sys.now_ns();
            for (self.connections, 0..) |maybe, slot| {
                const connection = maybe orelse continue;
                const reading = connection.phase == .header or connection.phase == .payload;
                const overdue = reading and connection.deadline_ns <= later;
                if (connection.phase == .closing or overdue) self.drop(slot);
            }
        }
    }

    fn accept_all(self: *Listener) void {
        while (self.count < connections_max) {
            const rc = linux.accept4(
                self.listen_fd,
                null,
                null,
                linux.SOCK.CLOEXEC | linux.SOCK.NONBLOCK,
            );
            switch (sys.errno_of(rc)) {
                .SUCCESS => {},
                .MFILE, .NFILE, .NOMEM, .NOBUFS => {
                    const pause_ns = accept_pause_ms * std.time.ns_per_ms;
                    self.accept_paused_until_ns = sys.now_ns() + pause_ns;
                    return;
                },
                else => return,
            }
            const fd: i32 = @intCast(rc);
            const connection = std.heap.c_allocator.create(Connection) catch {
                sys.close(fd);
                return;
            };
            connection.* = .{
                .fd = fd,
                .deadline_ns = sys.now_ns() + request_timeout_ms * std.time.ns_per_ms,
            };
            for (&self.connections, 0..) |*slot, index| {
                if (slot.* != null) continue;
                slot.* = connection;
                const generation = self.generations[index];
                self.generations[index] =
                    if (generation >= (1 << (31 - slot_bits)) - 1) 1 else generation + 1;
                self.count += 1;
                break;
            } else unreachable;
        }
    }

    fn drop(self: *Listener, slot: usize) void {
        const connection = self.connections[slot].?;
        connection.release_fds();
        sys.close(connection.fd);
        if (connection.record.len > 0) std.heap.c_allocator.free(connection.record);
        std.heap.c_allocator.destroy(connection);
        self.connections[slot] = null;
        self.count -= 1;
    }

    fn serve(self: *Listener, slot: usize, connection: *Connection) void {
        switch (connection.phase) {
            .header => self.read_header(slot, connection),
            .payload => self.read_payload(slot, connection),
            .handed => self.read_records(slot, connection),
            .closing => {},
        }
    }

    fn read_header(self: *Listener, slot: usize, connection: *Connection) void {
        const bytes = std.mem.asBytes(&connection.header);
        var control: sys.CmsgBuffer(wire.passed_fds + 1) = .{};
        const message = sys.receive_one(
            connection.fd,
            bytes[connection.header_got..],
            &control.bytes,
            linux.MSG.CMSG_CLOEXEC | linux.MSG.DONTWAIT,
        );
        const rc = message.rc;
        switch (sys.errno_of(rc)) {
            .SUCCESS => {},
            .AGAIN, .INTR => return,
            else => return self.hang_up(slot, connection),
        }
        const truncated = message.flags & linux.MSG.CTRUNC != 0;
        if (message.control_bytes > 0 or truncated) {
            // Fds come once, with the first bytes; a second batch or a truncated one is hostile,
            // unless the kernel could not install them (then none or only some came).
            const fds = control.take_fds_any(message.control_bytes);
            if (connection.fds_received > 0 or truncated or fds.count != wire.passed_fds) {
                for (fds.slice()) |fd| sys.close(fd);
                if (truncated) self.refuse_if_short(slot, connection, @intCast(fds.count));
                connection.phase = .closing;
                return;
            }
            connection.fds = fds.items[0..wire.passed_fds].*;
            connection.fds_received = @intCast(fds.count);
        }
        if (rc == 0) return self.hang_up(slot, connection);
        connection.header_got += @intCast(rc);
        if (connection.header_got < bytes.len) return;
        switch (judge_header(connection.header, connection.fds_received)) {
            .reject => connection.phase = .closing,
            .fallback => {
                // Closed either way: a front end that cannot hear it sees the hang-up.
                self.answer(connection, .fallback, 0, "") catch {};
                connection.phase = .closing;
            },
            .read_payload => {
                connection.record = std.heap.c_allocator.alloc(
                    u8,
                    request_record_prefix_bytes + connection.header.payload_bytes,
                ) catch {
                    connection.phase = .closing;
                    return;
                };
                connection.phase = .payload;
                self.read_payload(slot, connection);
            },
        }
    }

    fn read_payload(self: *Listener, slot: usize, connection: *Connection) void {
        const payload = connection.record[request_record_prefix_bytes..];
        while (connection.payload_got < payload.len) {
            const rc = linux.read(
                connection.fd,
                payload[connection.payload_got..].ptr,
                payload.len - connection.payload_got,
            );
            switch (sys.errno_of(rc)) {
                .SUCCESS => if (rc == 0) return self.hang_up(slot, connection),
                .AGAIN => return,
                .INTR => continue,
                else => return self.hang_up(slot, connection),
            }
            connection.payload_got += @intCast(rc);
        }
        if (!payload_valid(connection.header, payload)) {
            connection.phase = .closing;
            return;
        }
        for (connection.fds, 0..) |fd, i| std.mem.writeInt(
            i32,
            connection.record[4 * i ..][0..4],
            fd,
            .little,
        );
        std.mem.writeInt(u32, connection.record[12..16], connection.header.argc, .little);
        std.mem.writeInt(u32, connection.record[16..20], connection.header.envc, .little);
        // The fds are JavaScript's from here on.
        connection.fds = .{ -1, -1, -1 };
        connection.fds_received = 0;
        connection.phase = .handed;
        self.reporter.report(
            self.reporter.context,
            self.id_of(slot),
            .client_request,
            0,
            connection.record,
        );
        std.heap.c_allocator.free(connection.record);
        connection.record = &.{};
    }

    /// One read per poll round, and at most one record of each kind per connection queued: a
    /// front end that writes without end neither holds the thread nor grows the queue (its
    /// SIGUSR1s are coalesced; each local record is accepted once, in its turn).
    fn read_records(self: *Listener, slot: usize, connection: *Connection) void {
        var buffer: [64]u8 = undefined;
        const kept = connection.partial_len;
        @memcpy(buffer[0..kept], connection.partial[0..kept]);
        connection.partial_len = 0;
        var control: sys.CmsgBuffer(wire.local_fds + 1) = .{};
        const message = sys.receive_one(
            connection.fd,
            buffer[kept..],
            &control.bytes,
            linux.MSG.CMSG_CLOEXEC | linux.MSG.DONTWAIT,
        );
        const rc = message.rc;
        switch (sys.errno_of(rc)) {
            .SUCCESS => {},
            .AGAIN, .INTR => {
                connection.partial_len = kept;
                return;
            },
            else => return self.hang_up(slot, connection),
        }
        var fds = control.take_fds_any(message.control_bytes);
        const truncated = message.flags & linux.MSG.CTRUNC != 0;
        const with_fds = fds.count == wire.local_fds and !truncated;
        if (rc == 0) {
            for (fds.slice()) |fd| sys.close(fd);
            return self.hang_up(slot, connection);
        }
        const bytes = buffer[0 .. kept + rc];
        var offset: usize = 0;
        var hostile = false;
        parse: while (offset < bytes.len) {
            switch (next_record(bytes[offset..], connection.local, with_fds and fds.count > 0)) {
                .incomplete => break :parse,
                .hostile => {
                    hostile = true;
                    break :parse;
                },
                .record => |found| {
                    offset += found.len;
                    self.report_record(slot, connection, found.record, &fds);
                },
            }
        }
        // Fds that no `started` took are as hostile as bytes that are no record.
        if (fds.count > 0) hostile = true;
        for (fds.slice()) |fd| sys.close(fd);
        if (hostile) return self.hang_up(slot, connection);
        const left = bytes[offset..];
        assert(left.len < wire.local_record_bytes_max);
        @memcpy(connection.partial[0..left.len], left);
        connection.partial_len = @intCast(left.len);
    }

    fn report_record(
        self: *Listener,
        slot: usize,
        connection: *Connection,
        record: Record,
        fds: *sys.CmsgBuffer(wire.local_fds + 1).Fds,
    ) void {
        const id = self.id_of(slot);
        const context = self.reporter.context;
        switch (record) {
            .signal => self.reporter.report(context, id, .client_signal, 0, ""),
            .synced => self.reporter.report(context, id, .client_synced, 0, ""),
            .started => |pid| {
                var payload: [4 * wire.local_fds]u8 = undefined;
                for (fds.slice(), 0..) |fd, i| {
                    std.mem.writeInt(i32, payload[4 * i ..][0..4], fd, .little);
                }
                // The fds are JavaScript's from here on.
                fds.count = 0;
                connection.local = .started;
                self.reporter.report(context, id, .client_local_started, pid, &payload);
            },
            .failed => |errno| {
                connection.local = .ended;
                self.reporter.report(context, id, .client_local_failed, -errno, "");
            },
            .exited => |status| {
                connection.local = .ended;
                self.reporter.report(context, id, .client_local_exit, status, "");
            },
        }
    }

    /// The kernel sets MSG_CTRUNC and installs fewer fds than were sent when this process has
    /// no room for them (a sender of too many fills the buffer instead: hostile). Out of fds,
    /// the front end hears why (`refused`) instead of a hang-up that looks like a dead agent,
    /// and JS logs it.
    fn refuse_if_short(self: *Listener, slot: usize, connection: *Connection, installed: u32) void {
        if (installed >= wire.passed_fds) return;
        const probe = linux.fcntl(connection.fd, sys.F_DUPFD_CLOEXEC, 0);
        if (sys.errno_of(probe) == .SUCCESS) sys.close(@intCast(probe));
        // The table may have room again by now; ENFILE is the only other cause we can name.
        const errno: linux.E = if (sys.errno_of(probe) == .NFILE) .NFILE else .MFILE;
        // A courtesy: the caller drops the connection either way.
        self.answer(connection, .refused, @intCast(@intFromEnum(errno)), "") catch {};
        const value = -@as(i32, @intCast(@intFromEnum(errno)));
        self.reporter.report(self.reporter.context, self.id_of(slot), .client_refused, value, "");
    }

    /// The front end closed or died: JS hears of it only once it has the request.
    fn hang_up(self: *Listener, slot: usize, connection: *Connection) void {
        if (connection.phase == .handed) self.reporter.report(
            self.reporter.context,
            self.id_of(slot),
            .client_gone,
            0,
            "",
        );
        connection.phase = .closing;
    }
};

fn test_header(argc: u32, envc: u32, payload_bytes: u32) wire.RequestHeader {
    return .{
        .magic = wire.magic,
        .version = wire.version,
        .argc = argc,
        .envc = envc,
        .payload_bytes = payload_bytes,
    };
}

test "client host: headers are judged before any payload is read" {
    try std.testing.expectEqual(HeaderVerdict.read_payload, judge_header(test_header(2, 1, 20), 3));
    var bad_magic = test_header(2, 1, 20);
    bad_magic.magic ^= 1;
    try std.testing.expectEqual(HeaderVerdict.reject, judge_header(bad_magic, 3));
    // Another build's front end runs the Bun CLI instead, whatever else it sent.
    var other_version = test_header(2, 1, 20);
    other_version.version += 1;
    try std.testing.expectEqual(HeaderVerdict.fallback, judge_header(other_version, 0));
    try std.testing.expectEqual(HeaderVerdict.reject, judge_header(test_header(2, 1, 20), 2));
    try std.testing.expectEqual(
        HeaderVerdict.reject,
        judge_header(test_header(2, 1, wire.payload_bytes_max + 1), 3),
    );
    try std.testing.expectEqual(
        HeaderVerdict.reject,
        judge_header(test_header(0xffff_ffff, 1, 20), 3),
    );
    try std.testing.expectEqual(HeaderVerdict.reject, judge_header(test_header(15, 6, 20), 3));
}

test "client host: a payload holds exactly argc + envc strings" {
    try std.testing.expect(
        payload_valid(test_header(2, 1, 12), "vault\x00x\x00A=1\x00\x00"[0..12]),
    );
    try std.testing.expect(payload_valid(test_header(2, 1, 11), "vault\x00\x00A=1\x00"));
    try std.testing.expect(payload_valid(test_header(0, 0, 0), ""));
    try std.testing.expect(!payload_valid(test_header(2, 1, 10), "vault\x00\x00A=1"));
    try std.testing.expect(!payload_valid(test_header(2, 2, 11), "vault\x00\x00A=1\x00"));
    try std.testing.expect(!payload_valid(test_header(1, 1, 11), "vault\x00\x00A=1\x00"));
}

test "client host: a front end's records, each only in its turn" {
    const hostile = RecordVerdict.hostile;
    const signal = next_record("U", .none, false);
    try std.testing.expectEqual(Record.signal, signal.record.record);
    // A program is started only when asked to, and its fds come with the whole record.
    const started = "S\x39\x30\x00\x00";
    try std.testing.expectEqual(hostile, next_record(started, .none, true));
    try std.testing.expectEqual(hostile, next_record(started, .asked, false));
    const found = next_record(started, .asked, true).record;
    try std.testing.expectEqual(Record{ .started = 12345 }, found.record);
    try std.testing.expectEqual(@as(usize, 5), found.len);
    try std.testing.expectEqual(hostile, next_record(started, .started, true));
    try std.testing.expectEqual(hostile, next_record("S\x39\x30", .asked, true));
    try std.testing.expectEqual(hostile, next_record("S\x00\x00\x00\x00", .asked, true));
    // A value still to come waits for the next read.
    try std.testing.expectEqual(RecordVerdict.incomplete, next_record("F\x02\x00", .asked, false));
    const failed = next_record("F\x02\x00\x00\x00U", .asked, false).record;
    try std.testing.expectEqual(Record{ .failed = 2 }, failed.record);
    try std.testing.expectEqual(@as(usize, 5), failed.len);
    try std.testing.expectEqual(hostile, next_record("F\x00\x00\x00\x00", .asked, false));
    try std.testing.expectEqual(hostile, next_record("F\x02\x00\x00\x00", .started, false));
    // A status is 0-255, and only of a program that started.
    const exited = next_record("X\x8f\x00\x00\x00", .started, false).record;
    try std.testing.expectEqual(Record{ .exited = 143 }, exited.record);
    try std.testing.expectEqual(hostile, next_record("X\x00\x00\x00\x00", .asked, false));
    try std.testing.expectEqual(hostile, next_record("X\x00\x01\x00\x00", .started, false));
    try std.testing.expectEqual(hostile, next_record("X\xff\xff\xff\xff", .started, false));
    try std.testing.expectEqual(hostile, next_record("X\x00\x00\x00\x00", .ended, false));
    // The answer to `sync`: while the program runs or after it ended, and always 0.
    for ([_]LocalState{ .started, .ended }) |state| {
        const synced = next_record("Y\x00\x00\x00\x00", state, false).record;
        try std.testing.expectEqual(Record.synced, synced.record);
        try std.testing.expectEqual(@as(usize, 5), synced.len);
    }
    try std.testing.expectEqual(hostile, next_record("Y\x00\x00\x00\x00", .asked, false));
    try std.testing.expectEqual(hostile, next_record("Y\x01\x00\x00\x00", .started, false));
    try std.testing.expectEqual(RecordVerdict.hostile, next_record("?", .started, false));
}

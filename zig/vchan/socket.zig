//! The vchan-socket-compatible vchan (vchan.md §4, §5.4): a raw SOCK_STREAM unix socket named
//! exactly as QubesOS/qubes-core-vchan-socket names it, so upstream C binaries built with
//! BACKEND_VMM=socket and the qrexec Python test peers (which speak raw qrexec frames on the
//! same sockets) can talk to us. There is no handshake and no framing: the bytes qrexec writes
//! are the bytes on the socket.
//!
//! Upstream runs a thread per vchan that moves bytes between the socket and two local rings.
//! Here there is no thread: the socket is non-blocking and the caller drives the copying
//! through the same methods as `shm.Vchan` (`wait_event`, and the read/write calls, which move
//! what they can without sleeping before they ever block). `fd_for_select` is an epoll fd whose
//! interest always mirrors the rings: socket readable while the read ring has room, writable
//! while the write ring holds bytes, nothing at all otherwise (so a hung-up socket cannot make
//! a poll loop spin while the caller is not reading).
//!
//! Semantics (libvchan's, vchan.md §1.3, with the differences a socket forces):
//! - `data_ready`/`buffer_space` describe the local rings only; nothing about the peer's
//!   buffers is known. Writing before the connection exists is allowed on both roles and the
//!   bytes are flushed once it does (upstream's test_write_then_connect). `shm` refuses
//!   client I/O before `finish` returns 0, because there is no ring before the mapping.
//! - DISCONNECTED is reported only once the socket has returned EOF (or an error) to a read,
//!   that is once everything the peer ever sent sits in the read ring. So, as on Xen,
//!   "disconnected and data_ready == 0" means nothing more will come. While the read ring is
//!   full a departed peer still looks CONNECTED; a write to it fails with PIPE as soon as the
//!   kernel says so.
//! - `recv`/`send` larger than the local ring fail with MSGSIZE (vchan.md §1.4, last bullet);
//!   upstream's vchan-socket would wait forever instead.
//!
//! Decisions:
//! - The server leaves its socket file behind, as upstream does; the next server of that name
//!   unlinks it before binding. Unlinking on accept or close could remove a newer server's file
//!   of the same name, and a stale file is harmless: a client gets ECONNREFUSED and keeps
//!   waiting exactly as for a missing file. The listening socket itself is closed once the one
//!   connection is accepted.
//! - Client ring sizes are not on the wire, so a client uses `read_min`/`write_min` when given
//!   and 64 KiB otherwise (upstream uses 4096).
//! - A client retries `connect` when inotify reports a change in the directory (the process's
//!   one shared watch, dir_watch.zig, as for shm: an inotify instance per pending client would
//!   let a caller that leaves calls pending exhaust the user's instances), and on a
//!   100 ms timer whose first tick is immediate: the timer covers the moment between a server's
//!   bind and its listen (connect then fails and no further inotify event follows), and the
//!   immediate tick makes `fd_for_select` readable at once for a caller that polls before it
//!   calls `finish`, like the first firing of a xenstore watch.
//! - Only our own user (or root) may connect to a server, as for the shm vchan.
//! - `Options.pages_max` and `Options.spin_ns` do not apply: there are no grants, and waiting
//!   is always on the socket.
//!
//! Ownership: a Vchan owns its fds and its ring mapping and releases them in `close`. It is
//! used by one thread at a time.
//!
//! Trust: the peer controls only a byte stream; the rings are fixed at init, nothing read from
//! the socket is interpreted here, and `close` discards at most a bounded amount of input.
const std = @import("std");
const linux = std.os.linux;
const assert = std.debug.assert;

const constants = @import("../constants.zig");
const diag = @import("../diag.zig");
const sys = @import("../sys.zig");
const backend_common = @import("backend_common.zig");
const SocketPath = backend_common.SocketPath;
const dir_watch = @import("dir_watch.zig");
const shm = @import("shm.zig");
const Fail = diag.Fail;
const State = constants.State;
const Options = shm.Options;

/// Ring size of a client that asks for none (vchan.md §5.4).
const client_ring_bytes_default: u32 = 64 * 1024;
/// How often a waiting client retries `connect` besides inotify: upstream's intended delay.
const connect_retry_ms: u32 = 100;
/// How long `close` keeps trying to hand the write ring to the peer.
const close_flush_ms: u32 = 1000;
/// Most input `close` reads and drops after the flush: without it, closing with unread bytes
/// queued makes the kernel report ECONNRESET to the peer instead of a clean EOF.
const close_discard_bytes_max: u32 = constants.ring_bytes_max;

/// Waiting: the server listens, or the client has not reached a listening server yet.
/// Connected: the one connection exists; it stays in this phase after the peer leaves.
const Phase = enum { waiting, connected };

/// What an epoll event is about; stored in `epoll_event.data.u32`.
/// `own_event` is the waiting client's eventfd, kicked by the shared directory watch.
const Tag = enum(u32) { listener = 1, connection = 2, watch = 3, timer = 4, own_event = 5 };

/// One direction's local buffer. Indices run freely and wrap with u32 arithmetic, which is
/// exact because the size is a power of two.
const Ring = struct {
    bytes: [*]u8,
    size: u32,
    prod: u32 = 0,
    cons: u32 = 0,

    fn mask(self: *const Ring) u32 {
        return self.size - 1;
    }

    fn used(self: *const Ring) u32 {
        const count = self.prod -% self.cons;
        assert(count <= self.size);
        return count;
    }

    fn free(self: *const Ring) u32 {
        return self.size - self.used();
    }

    /// The free space as one or two pieces, in stream order.
    fn free_pieces(self: *const Ring, pieces: *[2]std.posix.iovec) []std.posix.iovec {
        const space = self.free();
        assert(space > 0);
        const position = self.prod & self.mask();
        const first = @min(space, self.size - position);
        pieces[0] = .{ .base = self.bytes + position, .len = first };
        pieces[1] = .{ .base = self.bytes, .len = space - first };
        return pieces[0..if (space > first) 2 else 1];
    }

    /// The queued bytes as one or two pieces, oldest first.
    fn used_pieces(self: *const Ring, pieces: *[2]std.posix.iovec_const) []std.posix.iovec_const {
        const count = self.used();
        assert(count > 0);
        const position = self.cons & self.mask();
        const first = @min(count, self.size - position);
        pieces[0] = .{ .base = self.bytes + position, .len = first };
        pieces[1] = .{ .base = self.bytes, .len = count - first };
        return pieces[0..if (count > first) 2 else 1];
    }

    fn produced(self: *Ring, count: u32) void {
        assert(count <= self.free());
        self.prod +%= count;
    }

    fn consumed(self: *Ring, count: u32) void {
        assert(count <= self.used());
        self.cons +%= count;
    }

    fn copy_in(self: *Ring, source: []const u8) void {
        assert(source.len <= self.free());
        const position = self.prod & self.mask();
        const first = @min(source.len, self.size - position);
        @memcpy(self.bytes[position..][0..first], source[0..first]);
        @memcpy(self.bytes[0 .. source.len - first], source[first..]);
        self.produced(@intCast(source.len));
    }

    fn copy_out(self: *Ring, target: []u8) void {
        assert(target.len <= self.used());
        const position = self.cons & self.mask();
        const first = @min(target.len, self.size - position);
        @memcpy(target[0..first], self.bytes[position..][0..first]);
        @memcpy(target[first..], self.bytes[0 .. target.len - first]);
        self.consumed(@intCast(target.len));
    }
};

pub const Vchan = struct {
    role: shm.Role,
    local_domain: i32,
    remote_domain: i32,
    port: i32,
    phase: Phase = .waiting,
    blocking: bool = true,
    /// `kicks` counts sends that moved bytes to the socket (our "notify the peer"); `wakeups`
    /// counts `wait_event` rounds that found events; `sleeps` as for shm. No spinning here.
    stats: shm.Stats = .{},
    listener: i32 = -1,
    connection: i32 = -1,
    /// Client, until connected: our registration with the process's shared directory watch,
    /// which kicks `own_event`.
    watch: ?dir_watch.Registration = null,
    own_event: i32 = -1,
    timer: i32 = -1,
    epoll: backend_common.Epoll(Tag) = .{},
    /// The epoll events the connection is registered for; 0 means not registered.
    interest: u32 = 0,
    /// The socket returned EOF or an error to a read: everything the peer sent is in the ring.
    read_ended: bool = false,
    /// The socket refused a send (the peer is gone); the write ring was dropped.
    write_failed: bool = false,
    map: ?[]align(std.heap.page_size_min) u8 = null,
    read_ring: Ring = undefined,
    write_ring: Ring = undefined,
    socket_path: SocketPath = .{},
    cause: backend_common.Reason = .{},

    // ---------------------------------------------------------------- set-up

    pub fn server_init(self: *Vchan, options: Options) Fail!void {
        self.* = .{
            .role = .server,
            .local_domain = options.local_domain,
            .remote_domain = options.remote_domain,
            .port = options.port,
        };
        errdefer self.close();
        try self.set_path(options.dir, self.local_domain, self.remote_domain);
        try self.create_common(options, options.read_min, options.write_min);
        // vchan-socket's order: unlink whatever an earlier server left, then bind a fresh one.
        _ = linux.unlink(self.path());
        self.listener = try sys.fd(
            linux.socket(
                linux.AF.UNIX,
                linux.SOCK.STREAM | linux.SOCK.CLOEXEC | linux.SOCK.NONBLOCK,
                0,
            ),
            "socket",
        );
        var address = self.socket_path.address();
        _ = sys.check(
            linux.bind(self.listener, @ptrCast(&address), @sizeOf(linux.sockaddr.un)),
            "bind",
        ) catch {
            diag.context("cannot listen on {s}", .{self.path()});
            return error.Fail;
        };
        _ = try sys.check(linux.listen(self.listener, 1), "listen");
        try self.epoll.add(self.listener, .listener, linux.EPOLL.IN);
    }

    /// Starts an asynchronous client; `finish` (or `wait_event`) completes it. Does not wait.
    pub fn client_init(self: *Vchan, options: Options) Fail!void {
        self.* = .{
            .role = .client,
            .local_domain = options.local_domain,
            .remote_domain = options.remote_domain,
            .port = options.port,
        };
        errdefer self.close();
        if (options.local_domain == options.remote_domain) {
            return diag.fail(
                .INVAL,
                "loopback vchan connection not supported (domain {d} to itself)",
                .{options.local_domain},
            );
        }
        const read_bytes =
            if (options.read_min == 0) client_ring_bytes_default else options.read_min;
        const write_bytes =
            if (options.write_min == 0) client_ring_bytes_default else options.write_min;
        try self.set_path(options.dir, self.remote_domain, self.local_domain);
        try self.create_common(options, read_bytes, write_bytes);
        const event_flags = linux.EFD.CLOEXEC | linux.EFD.NONBLOCK;
        self.own_event = try sys.fd(linux.eventfd(0, event_flags), "eventfd");
        try self.epoll.add(self.own_event, .own_event, linux.EPOLL.IN);
        var dir_z: [constants.socket_path_bytes_max + 1]u8 = undefined;
        // Shorter than the socket path, which fitted.
        const dir = std.fmt.bufPrintZ(&dir_z, "{s}", .{options.dir}) catch unreachable;
        const watch = try dir_watch.register(dir, self.own_event);
        self.watch = watch;
        try self.epoll.add(watch.fd, .watch, linux.EPOLL.IN);
        self.timer = try sys.fd(
            linux.timerfd_create(.MONOTONIC, .{ .NONBLOCK = true, .CLOEXEC = true }),
            "timerfd_create",
        );
        const schedule = linux.itimerspec{
            .it_value = .{ .sec = 0, .nsec = 1 },
            .it_interval = .{ .sec = 0, .nsec = connect_retry_ms * std.time.ns_per_ms },
        };
        _ = try sys.check(
            linux.timerfd_settime(self.timer, .{}, &schedule, null),
            "timerfd_settime",
        );
        try self.epoll.add(self.timer, .timer, linux.EPOLL.IN);
    }

    fn create_common(self: *Vchan, options: Options, read_min: u32, write_min: u32) Fail!void {
        if (options.dir.len == 0) return diag.fail(.INVAL, "no vchan directory given", .{});
        if (read_min > constants.ring_bytes_max or write_min > constants.ring_bytes_max) {
            return diag.fail(
                .MSGSIZE,
                "ring sizes {d}/{d} exceed the 1 MiB maximum",
                .{ read_min, write_min },
            );
        }
        const read_bytes = ring_bytes(read_min);
        const write_bytes = ring_bytes(write_min);
        const address = try sys.check(
            linux.mmap(
                null,
                read_bytes + write_bytes,
                linux.PROT.READ | linux.PROT.WRITE,
                .{ .TYPE = .PRIVATE, .ANONYMOUS = true },
                -1,
                0,
            ),
            "mmap",
        );
        const base: [*]align(std.heap.page_size_min) u8 = @ptrFromInt(address);
        self.map = base[0 .. read_bytes + write_bytes];
        self.read_ring = .{ .bytes = base, .size = read_bytes };
        self.write_ring = .{ .bytes = base + read_bytes, .size = write_bytes };
        try backend_common.make_directory(options.dir);
        try self.epoll.create();
    }

    fn set_path(self: *Vchan, dir: []const u8, server_domain: i32, client_domain: i32) Fail!void {
        self.socket_path = try SocketPath.init(
            dir,
            "vchan",
            server_domain,
            client_domain,
            self.port,
        );
    }

    pub fn path(self: *const Vchan) [:0]const u8 {
        return self.socket_path.slice();
    }

    /// Sizes of the local rings, for reports (`vx_info`'s read/write ring bytes). There are no
    /// ring orders or pages on this backend.
    pub fn read_ring_bytes(self: *const Vchan) u32 {
        return self.read_ring.size;
    }

    pub fn write_ring_bytes(self: *const Vchan) u32 {
        return self.write_ring.size;
    }

    /// Bytes written but not yet taken by the kernel: a close now would have to linger for
    /// them, so the pump waits for this to reach 0 before it closes a finished stream.
    pub fn unsent_bytes(self: *const Vchan) u32 {
        if (self.write_failed or self.map == null) return 0;
        return self.write_ring.used();
    }

    // ---------------------------------------------------------------- connecting

    fn accept_one(self: *Vchan) Fail!void {
        assert(self.role == .server and self.phase == .waiting);
        const rc = linux.accept4(
            self.listener,
            null,
            null,
            linux.SOCK.NONBLOCK | linux.SOCK.CLOEXEC,
        );
        switch (sys.errno_of(rc)) {
            .AGAIN, .INTR, .CONNABORTED => return,
            else => {},
        }
        const connection = try sys.fd(rc, "accept4");
        const uid = sys.peer_uid(connection);
        if (uid == null or (uid.? != linux.getuid() and uid.? != 0)) {
            // Xen checks this with xenstore permissions; here only our own user (or root).
            sys.close(connection);
            return;
        }
        // One connection per server, as upstream; the socket file stays (see the top).
        self.epoll.drop(&self.listener);
        self.connected(connection);
    }

    /// 1 = keep waiting, 0 = connected (libvchan_client_init_async_finish). Tries to connect now.
    pub fn finish(self: *Vchan) Fail!u32 {
        assert(self.role == .client);
        if (self.phase == .waiting) try self.try_connect();
        return if (self.phase == .connected) 0 else 1;
    }

    fn try_connect(self: *Vchan) Fail!void {
        assert(self.role == .client and self.phase == .waiting);
        // A caller may poll our fd and call only `finish`: empty the shared watch (waking the
        // other waiters), or it would stay readable.
        dir_watch.drain_and_kick();
        sys.drain(self.own_event);
        sys.drain(self.timer);
        const connection = try sys.fd(
            linux.socket(
                linux.AF.UNIX,
                linux.SOCK.STREAM | linux.SOCK.CLOEXEC | linux.SOCK.NONBLOCK,
                0,
            ),
            "socket",
        );
        var address = self.socket_path.address();
        const rc = linux.connect(connection, @ptrCast(&address), @sizeOf(linux.sockaddr.un));
        switch (sys.errno_of(rc)) {
            .SUCCESS => {},
            // No server yet, a stale file, or a full backlog: all mean "not yet".
            .NOENT, .CONNREFUSED, .AGAIN => {
                sys.close(connection);
                return;
            },
            else => |errno| {
                sys.close(connection);
                return diag.fail(errno, "connect {s}: {s}", .{ self.path(), @tagName(errno) });
            },
        }
        self.epoll.stop_watching(&self.watch, self.own_event);
        self.epoll.drop(&self.own_event);
        self.epoll.drop(&self.timer);
        self.connected(connection);
    }

    fn connected(self: *Vchan, connection: i32) void {
        assert(self.phase == .waiting and self.connection < 0);
        self.connection = connection;
        self.phase = .connected;
        // Whatever was written while waiting goes out now (upstream's test_write_then_connect).
        self.flush();
        self.sync_interest();
    }

    // ---------------------------------------------------------------- moving bytes

    /// Socket → read ring, until the ring is full, the socket has nothing more, or it ended.
    fn fill(self: *Vchan) void {
        if (self.phase != .connected or self.read_ended) return;
        while (self.read_ring.free() > 0) {
            var pieces: [2]std.posix.iovec = undefined;
            const free = self.read_ring.free_pieces(&pieces);
            const rc = linux.readv(self.connection, free.ptr, free.len);
            switch (sys.errno_of(rc)) {
                .SUCCESS => {},
                .AGAIN => break,
                .INTR => continue,
                else => |errno| {
                    self.end_reading("reading the vchan socket failed: {s}", .{@tagName(errno)});
                    break;
                },
            }
            if (rc == 0) {
                self.end_reading("the peer closed the vchan", .{});
                break;
            }
            self.read_ring.produced(@intCast(rc));
        }
        self.sync_interest();
    }

    /// Write ring → socket, until the ring is empty or the socket is full.
    fn flush(self: *Vchan) void {
        if (self.phase != .connected or self.write_failed) return;
        while (self.write_ring.used() > 0) {
            var pieces: [2]std.posix.iovec_const = undefined;
            const queued = self.write_ring.used_pieces(&pieces);
            var message = linux.msghdr_const{
                .name = null,
                .namelen = 0,
                .iov = queued.ptr,
                .iovlen = @intCast(queued.len),
                .control = null,
                .controllen = 0,
                .flags = 0,
            };
            // NOSIGNAL: a departed peer must become PIPE, not a SIGPIPE that kills the process.
            const rc = linux.sendmsg(
                self.connection,
                &message,
                linux.MSG.NOSIGNAL | linux.MSG.DONTWAIT,
            );
            switch (sys.errno_of(rc)) {
                .SUCCESS => {},
                .AGAIN => break,
                .INTR => continue,
                else => |errno| {
                    self.fail_writing(errno);
                    break;
                },
            }
            self.write_ring.consumed(@intCast(rc));
            self.stats.kicks +%= 1;
        }
        self.sync_interest();
    }

    fn end_reading(self: *Vchan, comptime fmt: []const u8, args: anytype) void {
        self.read_ended = true;
        if (self.cause.kind == .none) self.cause.set(.closed, fmt, args);
    }

    fn fail_writing(self: *Vchan, errno: linux.E) void {
        self.write_failed = true;
        // Nobody will ever take these bytes.
        self.write_ring.cons = self.write_ring.prod;
        if (self.cause.kind == .none) self.cause.set(
            .closed,
            "the peer stopped taking data: {s}",
            .{@tagName(errno)},
        );
    }

    /// Makes the connection's epoll registration match the rings. Called after every change to
    /// them. With no interest the socket is taken out of the set entirely, because epoll reports
    /// HUP and ERR even for an fd registered with no events, and a poll loop would spin on a
    /// hung-up socket whose data the caller is not reading yet.
    fn sync_interest(self: *Vchan) void {
        if (self.connection < 0) return;
        var wanted: u32 = 0;
        if (!self.read_ended and self.read_ring.free() > 0) wanted |= linux.EPOLL.IN;
        if (!self.write_failed and self.write_ring.used() > 0) wanted |= linux.EPOLL.OUT;
        if (wanted == self.interest) return;
        const operation: u32 = if (self.interest == 0)
            linux.EPOLL.CTL_ADD
        else if (wanted == 0)
            linux.EPOLL.CTL_DEL
        else
            linux.EPOLL.CTL_MOD;
        var event = linux.epoll_event{
            .events = wanted,
            .data = .{ .u32 = @intFromEnum(Tag.connection) },
        };
        const rc = linux.epoll_ctl(self.epoll.fd, operation, self.connection, &event);
        const errno = sys.errno_of(rc);
        if (errno != .SUCCESS) {
            // ADD can fail (ENOMEM, ENOSPC). Unwatched, the vchan could block forever; a
            // disconnect with a reason is the honest outcome.
            self.end_reading("cannot watch the vchan socket: {s}", .{@tagName(errno)});
            self.fail_writing(errno);
            return;
        }
        self.interest = wanted;
    }

    /// Sleeps on the epoll set until something happens (or `timeout_ms`), then does the
    /// non-blocking work it calls for: accept, connect retry, socket → read ring, write ring →
    /// socket.
    pub fn wait_event(self: *Vchan, timeout_ms: i32) Fail!void {
        var events: [4]linux.epoll_event = undefined;
        const rc = linux.epoll_wait(self.epoll.fd, &events, events.len, timeout_ms);
        if (sys.errno_of(rc) == .INTR) return;
        const count = try sys.check(rc, "epoll_wait");
        if (timeout_ms != 0) self.stats.sleeps +%= 1;
        if (count > 0) self.stats.wakeups +%= 1;
        var retry_connect = false;
        for (events[0..count]) |event| {
            switch (@as(Tag, @enumFromInt(event.data.u32))) {
                // An earlier event of this batch may have closed the fd an event is about.
                .listener => if (self.listener >= 0) try self.accept_one(),
                .watch => {
                    dir_watch.drain_and_kick();
                    retry_connect = true;
                },
                .own_event, .timer => retry_connect = true,
                .connection => if (self.connection >= 0) {
                    const ended = linux.EPOLL.HUP | linux.EPOLL.ERR;
                    if (event.events & (linux.EPOLL.IN | ended) != 0) self.fill();
                    if (event.events & (linux.EPOLL.OUT | ended) != 0) self.flush();
                },
            }
        }
        if (retry_connect and self.phase == .waiting) try self.try_connect();
    }

    /// Why the vchan disconnected or stopped taking writes (empty while neither happened).
    pub fn reason(self: *const Vchan) []const u8 {
        return self.cause.slice();
    }

    // ---------------------------------------------------------------- libvchan API

    /// libvchan_is_open. Pulls what the socket holds first, so that EOF is noticed without a
    /// `wait`; DISCONNECTED therefore means everything the peer sent is in the read ring.
    pub fn state(self: *Vchan) State {
        if (self.phase == .waiting) return .waiting;
        self.fill();
        return if (self.read_ended) .disconnected else .connected;
    }

    pub fn fd_for_select(self: *const Vchan) i32 {
        return self.epoll.fd;
    }

    pub fn data_ready(self: *Vchan) u32 {
        return self.read_ring.used();
    }

    pub fn buffer_space(self: *Vchan) u32 {
        if (self.read_ended or self.write_failed) return 0;
        return self.write_ring.free();
    }

    fn closed_failure(self: *const Vchan) Fail {
        return self.cause.closed_failure(self.remote_domain, self.port);
    }

    /// Where the blocking calls sleep. They only get here when an event can end the sleep:
    /// while waiting the listener or the retry timer is registered, and once connected the
    /// calls only sleep for room (IN registered) or for the socket to take bytes (OUT).
    fn sleep(self: *Vchan) Fail!void {
        assert(self.phase == .waiting or self.interest != 0);
        try self.wait_event(-1);
    }

    fn take(self: *Vchan, target: []u8) void {
        self.read_ring.copy_out(target);
        self.stats.bytes_read +%= target.len;
        self.sync_interest();
    }

    pub fn read(self: *Vchan, target: []u8) Fail!u32 {
        if (target.len == 0) return 0;
        while (true) {
            if (self.read_ring.used() < target.len) self.fill();
            const ready = self.read_ring.used();
            if (ready > 0) {
                const count: u32 = @intCast(@min(ready, target.len));
                self.take(target[0..count]);
                return count;
            }
            // Data is checked before liveness: a closed peer's last bytes are still delivered.
            if (self.read_ended) return self.closed_failure();
            if (!self.blocking) return 0;
            try self.sleep();
        }
    }

    pub fn recv(self: *Vchan, target: []u8) Fail!u32 {
        if (target.len > self.read_ring.size) {
            return diag.fail(
                .MSGSIZE,
                "recv of {d} bytes can never complete: the read ring holds {d}",
                .{ target.len, self.read_ring.size },
            );
        }
        const wanted: u32 = @intCast(target.len);
        while (true) {
            if (self.read_ring.used() < wanted) self.fill();
            if (self.read_ring.used() >= wanted) {
                self.take(target);
                return wanted;
            }
            if (self.read_ended) return self.closed_failure();
            if (!self.blocking) return 0;
            try self.sleep();
        }
    }

    pub fn write(self: *Vchan, source: []const u8) Fail!u32 {
        var written: u32 = 0;
        while (true) {
            // Writes are refused once the peer is known gone (upstream e1da6da), also midway.
            if (self.read_ended or self.write_failed) return self.closed_failure();
            const count: u32 = @intCast(@min(self.write_ring.free(), source.len - written));
            self.write_ring.copy_in(source[written..][0..count]);
            written += count;
            self.stats.bytes_written +%= count;
            self.flush();
            if (self.write_failed) return self.closed_failure();
            if (written == source.len) return written;
            if (self.write_ring.free() > 0) continue;
            if (!self.blocking) return written;
            try self.sleep();
        }
    }

    pub fn send(self: *Vchan, source: []const u8) Fail!u32 {
        if (source.len > self.write_ring.size) {
            return diag.fail(
                .MSGSIZE,
                "send of {d} bytes can never complete: the write ring holds {d}",
                .{ source.len, self.write_ring.size },
            );
        }
        const wanted: u32 = @intCast(source.len);
        while (true) {
            if (self.read_ended or self.write_failed) return self.closed_failure();
            if (self.write_ring.free() >= wanted) {
                self.write_ring.copy_in(source);
                self.stats.bytes_written +%= wanted;
                self.flush();
                if (self.write_failed) return self.closed_failure();
                return wanted;
            }
            self.flush();
            if (self.write_ring.free() >= wanted) continue;
            if (!self.blocking) return 0;
            try self.sleep();
        }
    }

    /// libvchan_wait: handle one batch of pending events, sleeping if there is none. Unlike a
    /// Xen event, readiness is not latched: if the caller moves the bytes itself between its
    /// poll and this call, this sleeps until the next change. qrexec calls it right after poll.
    pub fn wait(self: *Vchan) Fail!void {
        if (self.state() == .disconnected) return;
        // Read ring full and nothing to send: no event can come until the caller reads.
        if (self.phase == .connected and self.interest == 0) return;
        try self.wait_event(-1);
    }

    /// Waits until connected, for at most `timeout_ms` (negative: no limit). A connection whose
    /// peer has already left counts: what it sent is still to be read, as with qrexec's
    /// qubes_wait_for_vchan_connection_with_timeout.
    pub fn connect_wait(self: *Vchan, timeout_ms: i32) Fail!void {
        const deadline = backend_common.ConnectDeadline.init(timeout_ms);
        if (self.role == .client) _ = try self.finish();
        while (self.phase != .connected) {
            try self.wait_event(try deadline.remaining_ms(self.role == .client, self.path()));
        }
    }

    /// Hands the write ring to the peer (best effort, for at most `close_flush_ms`), then
    /// closes everything. The socket file stays behind (see the top).
    pub fn close(self: *Vchan) void {
        if (self.connection >= 0) self.linger();
        if (self.map) |map| _ = linux.munmap(map.ptr, map.len);
        self.map = null;
        self.epoll.stop_watching(&self.watch, self.own_event);
        inline for (.{ "connection", "listener", "own_event", "timer" }) |name| {
            sys.close(@field(self, name));
            @field(self, name) = -1;
        }
        self.epoll.close();
        self.interest = 0;
    }

    fn linger(self: *Vchan) void {
        assert(self.phase == .connected and self.map != null);
        const deadline = sys.now_ns() + @as(u64, close_flush_ms) * std.time.ns_per_ms;
        var discarded: u32 = 0;
        while (true) {
            // A peer blocked sending to us would not read what we flush; keep its data moving.
            self.discard_input(&discarded);
            self.flush();
            if (self.write_failed or self.write_ring.used() == 0) break;
            const now = sys.now_ns();
            if (now >= deadline) break;
            const discarding = !self.read_ended and discarded < close_discard_bytes_max;
            const events: i16 = if (discarding) linux.POLL.OUT | linux.POLL.IN else linux.POLL.OUT;
            var poll_fd = [_]linux.pollfd{
                .{ .fd = self.connection, .events = events, .revents = 0 },
            };
            _ = linux.poll(&poll_fd, 1, sys.ms_until(deadline, now));
        }
        self.discard_input(&discarded);
    }

    /// Reads and drops queued input, up to `close_discard_bytes_max` in all, into the read
    /// ring's memory, which nobody will read again.
    fn discard_input(self: *Vchan, discarded: *u32) void {
        while (!self.read_ended and discarded.* < close_discard_bytes_max) {
            const rc = linux.read(self.connection, self.read_ring.bytes, self.read_ring.size);
            switch (sys.errno_of(rc)) {
                .SUCCESS => {},
                .INTR => continue,
                else => return,
            }
            if (rc == 0) {
                self.read_ended = true;
                return;
            }
            discarded.* += @intCast(rc);
        }
    }
};

// -------------------------------------------------------------------- helpers

/// vchan-socket's sizing: the page size doubled until it reaches the minimum.
fn ring_bytes(minimum: u32) u32 {
    assert(minimum <= constants.ring_bytes_max);
    const size = std.math.ceilPowerOfTwoAssert(u32, @max(minimum, constants.page_bytes));
    assert(size % constants.page_bytes == 0);
    return size;
}

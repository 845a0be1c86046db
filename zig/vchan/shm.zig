//! The shared-memory vchan: libxenvchan's page layout and notify protocol (vchan.md §2) over a
//! sealed memfd, with a unix SOCK_SEQPACKET socket for the rendezvous that then stands in for
//! the event channel (vchan.md §5.3; the spec's eventfds were replaced, see "Wake-ups" below).
//! The semantics are libvchan's as qrexec relies on them (vchan.md §1.3): blocking by default,
//! partial `read`/`write`, all-or-nothing `recv`/`send`, `data_ready`/`buffer_space` arming
//! notifications, one `fd_for_select` from init to close.
//!
//! Ownership: a Vchan owns every fd and mapping it creates and releases them in `close`. It is
//! used by one thread at a time.
//!
//! Trust: the peer can write the shared page at any moment. Our own indices live in private
//! copies (the shared ones are only published), the ring orders are private copies validated
//! once, and each peer index is loaded exactly once per check and validated against the ring
//! size before it is used. A violation disconnects the vchan with a reason.
//!
//! Wake-ups (the event channel): a side kicks its peer by sending one byte on its own end of the
//! connected rendezvous socket with MSG_DONTWAIT, and sleeps on its end becoming readable. No fd
//! the peer made or holds is ever written: an eventfd or pipe received from the peer shares its
//! file description, whose O_NONBLOCK the peer can clear and whose counter or buffer it can
//! fill, so one write to it could block this process's only pump thread for ever. Our socket end
//! is ours alone (the peer holds the other end) and MSG_DONTWAIT is a per-call flag nobody else
//! can undo; the queue is charged to our send buffer, which only the peer's unread kicks fill,
//! so EAGAIN means a wake-up is already pending for it and the kick can be dropped: a peer that
//! stops draining only slows itself. The handshake therefore carries exactly one fd, the
//! server's memfd, checked to be one; anything else is refused with a reason.
//!
//! Who connects: a server listens on `shmvchan.S.C.P.sock` and a client connects to it, sends
//! a HELLO and gets the memfd back: three wake-ups when the client came first (its watch
//! seeing the name, the server's accept, the client's map). So a client that comes first and
//! has no page cap also offers itself on `shmoffer.S.C.P.sock`; a server that finds the offer
//! when it starts connects to it and sends its ACCEPT and memfd at once, and never lists its
//! own socket: the client maps after one wake-up. The HELLO's checks are the name's (domains
//! and port) and the page cap's, which only a capless client skips. Under isolation the offer
//! is in the client's own directory, where the server does not look: the broker's way stays.
const std = @import("std");
const linux = std.os.linux;
const assert = std.debug.assert;

const constants = @import("../constants.zig");
const diag = @import("../diag.zig");
const sys = @import("../sys.zig");
const backend_common = @import("backend_common.zig");
const dir_watch = @import("dir_watch.zig");
const SocketPath = backend_common.SocketPath;
const layout_mod = @import("layout.zig");
const Layout = layout_mod.Layout;
const Fail = diag.Fail;
const State = constants.State;

pub const Role = enum(u32) { server = 0, client = 1 };

/// Where a vchan is in its life. Both roles start `rendezvous` (server: listening; client:
/// watching the directory for the server's socket), go through `handshake` (a rendezvous
/// connection exists, fds not yet exchanged) and end `mapped` (the shared page is ours).
const Phase = enum { rendezvous, handshake, mapped };

/// What an epoll event is about; stored in `epoll_event.data.u32`. `own_event` is only ever
/// written by this process (the shared directory watch, `client_init`), never by the peer.
const Tag = enum(u32) { own_event = 1, listener = 2, connection = 3, watch = 4, offer = 5 };

pub const Options = struct {
    dir: []const u8,
    local_domain: i32,
    remote_domain: i32,
    port: i32,
    /// Server only: minimum ring sizes, libvchan's (read_min, write_min).
    read_min: u32 = 0,
    write_min: u32 = 0,
    /// Most pages a vchan may use (a Xen peer's grant budget); 0 means no cap.
    pages_max: u32 = 0,
    spin_ns: u32 = constants.spin_ns_default,
};

pub const Stats = struct {
    kicks: u32 = 0,
    wakeups: u32 = 0,
    sleeps: u32 = 0,
    spin_hits: u32 = 0,
    spin_misses: u32 = 0,
    /// Payload bytes taken from the read ring and put into the write ring since the start
    /// (headers included: the vchan does not know the protocol). `qrx lab top` shows them.
    bytes_read: u64 = 0,
    bytes_written: u64 = 0,
};

/// One direction of the vchan as seen from this side.
const Ring = struct {
    bytes: [*]u8,
    size: u32,
    /// Where we publish our own index (cons for the ring we read, prod for the one we write).
    own: *u32,
    /// The peer's index: untrusted, loaded once per check.
    peer: *const u32,
    /// Our index. The shared copy is never read back, so a peer scribbling on it cannot move us.
    local: u32,

    fn mask(self: Ring) u32 {
        return self.size - 1;
    }

    /// Bytes between cons and prod, or null when the peer's index is impossible.
    fn used_as_reader(self: Ring, untrusted_prod: u32) ?u32 {
        const used = untrusted_prod -% self.local;
        if (used > self.size) return null;
        return used;
    }

    fn used_as_writer(self: Ring, untrusted_cons: u32) ?u32 {
        const used = self.local -% untrusted_cons;
        if (used > self.size) return null;
        return used;
    }

    fn load_peer(self: Ring) u32 {
        return @atomicLoad(u32, self.peer, .seq_cst);
    }

    fn publish(self: *Ring, advanced: u32) void {
        assert(advanced <= self.size);
        self.local +%= advanced;
        // seq_cst puts the publish in the same total order as the notify-bit RMWs, which the
        // lost-wakeup argument needs (vchan.md §2.4).
        @atomicStore(u32, self.own, self.local, .seq_cst);
    }

    fn copy_out(self: *Ring, target: []u8) void {
        assert(target.len <= self.size);
        const position = self.local & self.mask();
        const first = @min(target.len, self.size - position);
        @memcpy(target[0..first], self.bytes[position..][0..first]);
        @memcpy(target[first..], self.bytes[0 .. target.len - first]);
        self.publish(@intCast(target.len));
    }

    /// `count` ring bytes starting `skip` past our index, as one or two pieces in stream order.
    fn window(self: Ring, skip: u32, count: u32, pieces: *[2]std.posix.iovec) []std.posix.iovec {
        assert(skip + count <= self.size);
        const position = (self.local +% skip) & self.mask();
        const first = @min(count, self.size - position);
        pieces[0] = .{ .base = self.bytes + position, .len = first };
        pieces[1] = .{ .base = self.bytes, .len = count - first };
        return pieces[0..if (count > first) 2 else 1];
    }

    fn copy_in(self: *Ring, source: []const u8) void {
        assert(source.len <= self.size);
        const position = self.local & self.mask();
        const first = @min(source.len, self.size - position);
        @memcpy(self.bytes[position..][0..first], source[0..first]);
        @memcpy(self.bytes[0 .. source.len - first], source[first..]);
        self.publish(@intCast(source.len));
    }
};

/// Adaptive spinning before sleeping (vchan.md §5.3, §7): spinning multiplies small-ring
/// throughput when both sides have a core, and wastes one when they do not. The budget doubles
/// after a spin that found work and halves after one that did not; at zero it stays off and is
/// probed again only after many sleeps, so an idle vchan never keeps a core busy.
const Spin = struct {
    max_ns: u32,
    budget_ns: u32,
    sleeps_since_off: u32 = 0,

    const probe_after_sleeps = 64;
    const floor_ns = 1000;

    fn init(max_ns: u32) Spin {
        const cores = std.Thread.getCpuCount() catch 1;
        const effective = if (cores < 2) 0 else @min(max_ns, constants.spin_ns_max);
        return .{ .max_ns = effective, .budget_ns = effective };
    }

    fn budget(self: *Spin) u32 {
        if (self.max_ns == 0) return 0;
        if (self.budget_ns == 0) {
            self.sleeps_since_off += 1;
            if (self.sleeps_since_off < probe_after_sleeps) return 0;
            self.sleeps_since_off = 0;
            // The probe's budget is the new budget: a hit doubles it from here, a miss halves it.
            self.budget_ns = @max(floor_ns, self.max_ns / 4);
        }
        return self.budget_ns;
    }

    fn hit(self: *Spin) void {
        self.budget_ns = @min(self.max_ns, @max(floor_ns, self.budget_ns *| 2));
    }

    fn miss(self: *Spin) void {
        self.budget_ns /= 2;
        if (self.budget_ns < floor_ns) self.budget_ns = 0;
    }
};

const Hello = extern struct {
    magic: u32,
    version: u16,
    flags: u16,
    client_domain: i32,
    server_domain: i32,
    port: i32,
    client_pages_max: u32,
};

const Accept = extern struct {
    magic: u32,
    version: u16,
    /// 0, or the errno for which the server refuses.
    status: u16,
    shm_bytes: u32,
    left_order: u16,
    right_order: u16,
};

comptime {
    assert(@sizeOf(Hello) == 24);
    assert(@sizeOf(Accept) == 16);
}

pub const Vchan = struct {
    role: Role,
    local_domain: i32,
    remote_domain: i32,
    port: i32,
    pages_max: u32,
    phase: Phase = .rendezvous,
    blocking: bool = true,
    layout: Layout = undefined,
    map: ?[]align(std.heap.page_size_min) u8 = null,
    memfd: i32 = -1,
    own_event: i32 = -1,
    listener: i32 = -1,
    connection: i32 = -1,
    /// Client, until a server came: listening for a server that connects to it.
    offer: i32 = -1,
    offer_path: SocketPath = .{},
    /// Client, until mapped: our registration with the process's shared directory watch.
    watch: ?dir_watch.Registration = null,
    epoll: backend_common.Epoll(Tag) = .{},
    socket_path: SocketPath = .{},
    /// The server saw `cli_live == 1`; from then on `2` means a lying peer, read as gone.
    seen_connected: bool = false,
    /// Set by us (rendezvous socket hung up, or the peer broke the protocol); never by the peer.
    peer_gone: bool = false,
    read_ring: Ring = undefined,
    write_ring: Ring = undefined,
    spin: Spin,
    stats: Stats = .{},
    cause: backend_common.Reason = .{},

    // ---------------------------------------------------------------- set-up

    pub fn server_init(self: *Vchan, options: Options) Fail!void {
        self.* = .{
            .role = .server,
            .local_domain = options.local_domain,
            .remote_domain = options.remote_domain,
            .port = options.port,
            .pages_max = options.pages_max,
            .spin = Spin.init(options.spin_ns),
        };
        errdefer self.close();
        self.layout = layout_mod.select_capped(
            options.read_min,
            options.write_min,
            options.pages_max,
        ) catch |err| {
            return switch (err) {
                error.RingTooLarge => diag.fail(
                    .MSGSIZE,
                    "ring sizes {d}/{d} exceed the 1 MiB maximum",
                    .{ options.read_min, options.write_min },
                ),
                error.PageCapExceeded => page_cap_failure(options),
            };
        };
        try self.set_path(options.dir);
        try self.create_common(options);
        try self.create_shared_memory();
        if (self.answer_offer(options.dir)) return;
        self.listener = try listening_socket(self.path(), options.dir);
        try self.epoll.add(self.listener, .listener, linux.EPOLL.IN);
    }

    /// A client already waiting offered itself: connect to it and hand it the rings now.
    /// False (and nothing changed) when there is no offer, or it cannot be answered.
    fn answer_offer(self: *Vchan, dir: []const u8) bool {
        assert(self.role == .server and self.phase == .rendezvous);
        const offer = self.rendezvous_path(dir, constants.shm_offer_prefix) catch return false;
        const flags = linux.SOCK.SEQPACKET | linux.SOCK.CLOEXEC | linux.SOCK.NONBLOCK;
        const rc = linux.socket(linux.AF.UNIX, flags, 0);
        if (sys.errno_of(rc) != .SUCCESS) return false;
        const connection: i32 = @intCast(rc);
        self.hand_rings(connection, offer) catch {
            sys.close(connection);
            return false;
        };
        self.connection = connection;
        self.phase = .mapped;
        return true;
    }

    /// Connects `connection` to the offer at `offer` and sends it our rings.
    fn hand_rings(self: *Vchan, connection: i32, offer: SocketPath) error{NoOffer}!void {
        var address = offer.address();
        const connected = linux.connect(connection, @ptrCast(&address), @sizeOf(linux.sockaddr.un));
        if (sys.errno_of(connected) != .SUCCESS or !peer_allowed(connection)) {
            return error.NoOffer;
        }
        self.send_accept(connection) catch return error.NoOffer;
        const events = linux.EPOLL.IN | linux.EPOLL.RDHUP;
        self.epoll.add(connection, .connection, events) catch return error.NoOffer;
    }

    /// The ACCEPT that hands the client our rings, with the memfd.
    fn send_accept(self: *Vchan, connection: i32) Fail!void {
        const reply = Accept{
            .magic = constants.handshake_magic,
            .version = constants.handshake_version,
            .status = 0,
            .shm_bytes = self.layout.total_bytes(),
            .left_order = self.layout.left_order,
            .right_order = self.layout.right_order,
        };
        var fds = sys.CmsgBuffer(1){};
        fds.set_fds(.{self.memfd});
        try send_message(connection, std.mem.asBytes(&reply), &fds.bytes);
    }

    /// A listening rendezvous socket named `name` (in `dir`); the caller owns the fd.
    fn listening_socket(name: [:0]const u8, dir: []const u8) Fail!i32 {
        const listener = try sys.fd(
            linux.socket(
                linux.AF.UNIX,
                linux.SOCK.SEQPACKET | linux.SOCK.CLOEXEC | linux.SOCK.NONBLOCK,
                0,
            ),
            "socket",
        );
        errdefer sys.close(listener);
        // Bound and listening under a temporary name first, then renamed into place: a client
        // woken by the name's appearance must never find a socket that is not listening yet
        // (it would get ECONNREFUSED and no further event).
        var staging_buffer: [constants.socket_path_bytes_max + 1]u8 = undefined;
        const staging = std.fmt.bufPrintZ(&staging_buffer, "{s}~", .{name}) catch {
            return diag.fail(
                .NAMETOOLONG,
                "vchan directory {s} is too long for a unix socket path (max {d} bytes)",
                .{ dir, constants.socket_path_bytes_max - 1 },
            );
        };
        _ = linux.unlink(staging);
        var address = backend_common.address_of(staging);
        _ = sys.check(
            linux.bind(listener, @ptrCast(&address), @sizeOf(linux.sockaddr.un)),
            "bind",
        ) catch {
            diag.context("cannot listen on {s}", .{name});
            return error.Fail;
        };
        // Who may connect is decided by who can reach the name (and the peer uid check in
        // `server_accept`), not by the umask: under isolation the client is another uid.
        _ = sys.check(linux.fchmodat(linux.AT.FDCWD, staging, 0o666, 0), "chmod") catch {
            _ = linux.unlink(staging);
            return error.Fail;
        };
        _ = sys.check(linux.listen(listener, 4), "listen") catch {
            _ = linux.unlink(staging);
            return error.Fail;
        };
        // Replaces a stale file from a server that died before its client came.
        _ = sys.check(linux.rename(staging, name), "rename") catch {
            _ = linux.unlink(staging);
            return error.Fail;
        };
        return listener;
    }

    fn page_cap_failure(options: Options) Fail {
        const wanted = layout_mod.select(options.read_min, options.write_min) catch unreachable;
        if (layout_mod.largest_symmetric_fit(options.pages_max)) |fit| {
            return diag.fail(.FBIG, "ring sizes {d}/{d} need {d} pages but the page cap is {d}; " ++
                "{d} bytes in each direction fit", .{
                options.read_min,
                options.write_min,
                wanted.pages(),
                options.pages_max,
                fit,
            });
        }
        return diag.fail(
            .FBIG,
            "ring sizes {d}/{d} need {d} pages but the page cap is {d}; no ring fits",
            .{ options.read_min, options.write_min, wanted.pages(), options.pages_max },
        );
    }

    /// Starts an asynchronous client; `finish` completes it. Does not wait for the server.
    pub fn client_init(self: *Vchan, options: Options) Fail!void {
        self.* = .{
            .role = .client,
            .local_domain = options.local_domain,
            .remote_domain = options.remote_domain,
            .port = options.port,
            .pages_max = options.pages_max,
            .spin = Spin.init(options.spin_ns),
        };
        errdefer self.close();
        if (options.local_domain == options.remote_domain) {
            return diag.fail(
                .INVAL,
                "loopback vchan connection not supported (domain {d} to itself)",
                .{options.local_domain},
            );
        }
        try self.set_path(options.dir);
        try self.create_common(options);
        var dir_z: [constants.socket_path_bytes_max + 1]u8 = undefined;
        const dir = std.fmt.bufPrintZ(&dir_z, "{s}", .{options.dir}) catch unreachable;
        // One inotify instance per process, shared (dir_watch.zig): closing one of our own
        // when connected would stall this thread for an SRCU grace period.
        const watch = try dir_watch.register(dir, self.own_event);
        self.watch = watch;
        try self.epoll.add(watch.fd, .watch, linux.EPOLL.IN);
        if (options.pages_max == 0) self.make_offer(options.dir);
        // Like a Xen watch, which fires once when set: a poller wakes and tries `finish` at once,
        // in case the server is already there.
        const one: u64 = 1;
        _ = linux.write(self.own_event, std.mem.asBytes(&one), 8);
    }

    /// Lists us for a server that comes later (see "Who connects"). Only a shortcut: when it
    /// cannot be made, the server's socket is still watched for, as always.
    fn make_offer(self: *Vchan, dir: []const u8) void {
        assert(self.role == .client and self.offer < 0);
        self.offer_path = self.rendezvous_path(dir, constants.shm_offer_prefix) catch return;
        const offer = listening_socket(self.offer_path.slice(), dir) catch return;
        self.epoll.add(offer, .offer, linux.EPOLL.IN) catch {
            _ = linux.unlink(self.offer_path.slice());
            sys.close(offer);
            return;
        };
        self.offer = offer;
    }

    /// The offer is single use: gone once a server connected either way (or we close).
    fn withdraw_offer(self: *Vchan) void {
        if (self.offer < 0) return;
        _ = linux.unlink(self.offer_path.slice());
        self.epoll.drop(&self.offer);
    }

    /// A server took our offer: its connection is ours, the ACCEPT and memfd on their way.
    fn take_offer(self: *Vchan) Fail!void {
        assert(self.role == .client and self.phase == .rendezvous and self.offer >= 0);
        const connection = try accept_allowed(self.offer) orelse return;
        self.withdraw_offer();
        errdefer sys.close(connection);
        try self.epoll.add(connection, .connection, linux.EPOLL.IN | linux.EPOLL.RDHUP);
        self.connection = connection;
        self.phase = .handshake;
    }

    fn create_common(self: *Vchan, options: Options) Fail!void {
        if (options.dir.len == 0) return diag.fail(.INVAL, "no vchan directory given", .{});
        try backend_common.make_directory(options.dir);
        try self.epoll.create();
        self.own_event = try sys.fd(
            linux.eventfd(0, linux.EFD.CLOEXEC | linux.EFD.NONBLOCK),
            "eventfd",
        );
        try self.epoll.add(self.own_event, .own_event, linux.EPOLL.IN);
    }

    fn create_shared_memory(self: *Vchan) Fail!void {
        assert(self.role == .server);
        const total = self.layout.total_bytes();
        self.memfd = try sys.fd(
            linux.memfd_create("qrx-vchan", linux.MFD.CLOEXEC | linux.MFD.ALLOW_SEALING),
            "memfd_create",
        );
        _ = try sys.check(linux.ftruncate(self.memfd, total), "ftruncate");
        // Sealed so the client can rely on the size: it cannot be made to SIGBUS by a shrink.
        _ = try sys.check(
            linux.fcntl(
                self.memfd,
                sys.F_ADD_SEALS,
                sys.F_SEAL_SHRINK | sys.F_SEAL_GROW | sys.F_SEAL_SEAL,
            ),
            "F_ADD_SEALS",
        );
        try self.map_shared(total);
        const page = self.map.?;
        @memset(page[0..constants.page_bytes], 0);
        std.mem.writeInt(
            u16,
            page[constants.offset_left_order..][0..2],
            self.layout.left_order,
            .little,
        );
        std.mem.writeInt(
            u16,
            page[constants.offset_right_order..][0..2],
            self.layout.right_order,
            .little,
        );
        var index: u32 = 0;
        while (index < self.layout.grants()) : (index += 1) {
            std.mem.writeInt(
                u32,
                page[constants.offset_grants + 4 * index ..][0..4],
                self.layout.grant(index),
                .little,
            );
        }
        self.byte(constants.offset_cli_live).* = constants.live_waiting;
        self.byte(constants.offset_srv_live).* = constants.live_connected;
        // "Tell me when you write": also how the client's first write reaches us.
        self.byte(constants.offset_cli_notify).* = constants.notify_write;
        self.byte(constants.offset_srv_notify).* = 0;
        self.setup_rings(0, 0);
    }

    fn map_shared(self: *Vchan, total: u32) Fail!void {
        const address = try sys.check(
            linux.mmap(
                null,
                total,
                linux.PROT.READ | linux.PROT.WRITE,
                .{ .TYPE = .SHARED },
                self.memfd,
                0,
            ),
            "mmap",
        );
        const base: [*]align(std.heap.page_size_min) u8 = @ptrFromInt(address);
        self.map = base[0..total];
    }

    /// Points the rings at the mapping. `read_local`/`write_local` are our starting indices.
    fn setup_rings(self: *Vchan, read_local: u32, write_local: u32) void {
        const page = self.map.?;
        const left = Ring{
            .bytes = page.ptr + self.layout.left_offset(),
            .size = self.layout.left_bytes(),
            .own = undefined,
            .peer = undefined,
            .local = 0,
        };
        var right = left;
        right.bytes = page.ptr + self.layout.right_offset();
        right.size = self.layout.right_bytes();
        switch (self.role) {
            .server => {
                self.read_ring = left;
                self.read_ring.own = self.word(constants.offset_left_cons);
                self.read_ring.peer = self.word(constants.offset_left_prod);
                self.write_ring = right;
                self.write_ring.own = self.word(constants.offset_right_prod);
                self.write_ring.peer = self.word(constants.offset_right_cons);
            },
            .client => {
                self.read_ring = right;
                self.read_ring.own = self.word(constants.offset_right_cons);
                self.read_ring.peer = self.word(constants.offset_right_prod);
                self.write_ring = left;
                self.write_ring.own = self.word(constants.offset_left_prod);
                self.write_ring.peer = self.word(constants.offset_left_cons);
            },
        }
        self.read_ring.local = read_local;
        self.write_ring.local = write_local;
        assert(self.read_ring.size >= 1024 and self.write_ring.size >= 1024);
        assert(std.math.isPowerOfTwo(self.read_ring.size));
        assert(std.math.isPowerOfTwo(self.write_ring.size));
    }

    fn set_path(self: *Vchan, dir: []const u8) Fail!void {
        self.socket_path = try self.rendezvous_path(dir, "shmvchan");
    }

    /// `DIR/PREFIX.SERVER.CLIENT.PORT.sock` for this vchan's pair, whichever end we are.
    fn rendezvous_path(self: *const Vchan, dir: []const u8, prefix: []const u8) Fail!SocketPath {
        const server, const client = switch (self.role) {
            .server => .{ self.local_domain, self.remote_domain },
            .client => .{ self.remote_domain, self.local_domain },
        };
        return SocketPath.init(dir, prefix, server, client, self.port);
    }

    pub fn path(self: *const Vchan) [:0]const u8 {
        return self.socket_path.slice();
    }

    // ---------------------------------------------------------------- rendezvous

    /// Xen checks this with xenstore permissions. Here: our own user, root, or an isolated lab
    /// domain's uid; under isolation only the host decides who can reach the socket at all (the
    /// lab's broker links a server's socket into its one peer's directory, src/lab/broker.ts).
    fn peer_uid_allowed(uid: u32) bool {
        if (uid == linux.getuid() or uid == 0) return true;
        return uid -% constants.domain_uid_base < constants.domain_uid_count;
    }

    /// Whether the peer of `connection` (a connected unix socket) is one `peer_uid_allowed`.
    fn peer_allowed(connection: i32) bool {
        const uid = sys.peer_uid(connection) orelse return false;
        return peer_uid_allowed(uid);
    }

    /// The next connection on `listener` from a peer `peer_uid_allowed` lets in; null when there
    /// is none (or it was another's, then closed).
    fn accept_allowed(listener: i32) Fail!?i32 {
        const flags = linux.SOCK.NONBLOCK | linux.SOCK.CLOEXEC;
        const rc = linux.accept4(listener, null, null, flags);
        if (sys.errno_of(rc) == .AGAIN) return null;
        const connection = try sys.fd(rc, "accept4");
        if (peer_allowed(connection)) return connection;
        sys.close(connection);
        return null;
    }

    fn server_accept(self: *Vchan) Fail!void {
        assert(self.role == .server);
        const connection = try accept_allowed(self.listener) orelse return;
        // One pending handshake at a time; a newer caller replaces one that never said hello.
        self.epoll.drop(&self.connection);
        self.connection = connection;
        try self.epoll.add(connection, .connection, linux.EPOLL.IN | linux.EPOLL.RDHUP);
        self.phase = .handshake;
        try self.server_handshake();
    }

    fn server_handshake(self: *Vchan) Fail!void {
        assert(self.role == .server and self.phase == .handshake);
        var hello: Hello = undefined;
        var control = sys.CmsgBuffer(1){};
        const received = receive_message(
            self.connection,
            std.mem.asBytes(&hello),
            &control.bytes,
        ) orelse return;
        if (received.bytes == 0) {
            // The caller went away before finishing; wait for another.
            self.epoll.drop(&self.connection);
            self.phase = .rendezvous;
            return;
        }
        // A HELLO carries no fd (see the file comment): any the caller sent are closed unused.
        const sent_fds = control.take_fds_any(received.control_bytes);
        for (sent_fds.slice()) |descriptor| sys.close(descriptor);
        const refusal = self.hello_refusal(hello, received.bytes, sent_fds.count);
        if (refusal != 0) return self.refuse(refusal, hello.client_pages_max);
        self.send_accept(self.connection) catch |err| {
            self.epoll.drop(&self.connection);
            self.phase = .rendezvous;
            return err;
        };
        // Single use, like the xenstore entry a Xen server removes once a client came.
        self.epoll.drop(&self.listener);
        _ = linux.unlink(self.path());
        // From now on the socket carries only the peer's kicks, and its hang-up when it is gone.
        self.epoll.modify(self.connection, .connection, linux.EPOLL.IN | linux.EPOLL.RDHUP);
        self.phase = .mapped;
    }

    /// Why the HELLO is refused, as an errno (0: accepted).
    fn hello_refusal(self: *const Vchan, hello: Hello, bytes: usize, fd_count: usize) u16 {
        const foreign = hello.magic != constants.handshake_magic or
            hello.version != constants.handshake_version;
        if (bytes != @sizeOf(Hello) or foreign) return @intFromEnum(linux.E.PROTO);
        if (fd_count != 0) return @intFromEnum(linux.E.PROTO);
        const elsewhere = hello.client_domain != self.remote_domain or
            hello.server_domain != self.local_domain or hello.port != self.port;
        if (elsewhere) return @intFromEnum(linux.E.ACCES);
        const too_big = self.layout.pages() > hello.client_pages_max;
        if (hello.client_pages_max != 0 and too_big) return @intFromEnum(linux.E.FBIG);
        return 0;
    }

    /// Answers a refused HELLO and waits for another caller, unless the page cap rules out
    /// every caller.
    fn refuse(self: *Vchan, refusal: u16, client_pages_max: u32) void {
        const reply = Accept{
            .magic = constants.handshake_magic,
            .version = constants.handshake_version,
            .status = refusal,
            .shm_bytes = 0,
            .left_order = 0,
            .right_order = 0,
        };
        // A courtesy to a caller that may be gone already: it is dropped either way.
        send_message(self.connection, std.mem.asBytes(&reply), null) catch {};
        self.epoll.drop(&self.connection);
        self.phase = .rendezvous;
        if (refusal == @intFromEnum(linux.E.FBIG)) {
            // The right client, which can never map these rings (a MirageOS peer's grant
            // table): nobody else will come, so the vchan fails now instead of at a timeout.
            self.cause.set(
                .closed,
                "the peer's page cap is {d} pages, these rings ({d}/{d} bytes) need {d}",
                .{
                    client_pages_max,
                    self.layout.left_bytes(),
                    self.layout.right_bytes(),
                    self.layout.pages(),
                },
            );
            self.peer_gone = true;
        }
    }

    /// 1 = keep waiting, 0 = connected (libvchan_client_init_async_finish).
    pub fn finish(self: *Vchan) Fail!u32 {
        assert(self.role == .client);
        if (self.phase == .mapped) return 0;
        if (self.phase == .rendezvous) {
            // A caller may poll our fd and call only `finish`: empty the shared watch (waking
            // the other waiters), or it would stay readable. Our own kicks, from it or from
            // anyone's drain before now, are answered by the connect below: left, they woke
            // the pump once more for nothing once connected.
            dir_watch.drain_and_kick();
            sys.drain(self.own_event);
            if (self.offer >= 0) try self.take_offer();
        }
        if (self.phase == .rendezvous) {
            const connection = try sys.fd(
                linux.socket(
                    linux.AF.UNIX,
                    linux.SOCK.SEQPACKET | linux.SOCK.CLOEXEC | linux.SOCK.NONBLOCK,
                    0,
                ),
                "socket",
            );
            var address = self.socket_path.address();
            const rc = linux.connect(connection, @ptrCast(&address), @sizeOf(linux.sockaddr.un));
            switch (sys.errno_of(rc)) {
                .SUCCESS => {},
                .NOENT, .CONNREFUSED, .AGAIN => {
                    sys.close(connection);
                    return 1;
                },
                else => |errno| {
                    sys.close(connection);
                    return diag.fail(errno, "connect {s}: {s}", .{ self.path(), @tagName(errno) });
                },
            }
            const hello = Hello{
                .magic = constants.handshake_magic,
                .version = constants.handshake_version,
                .flags = 0,
                .client_domain = self.local_domain,
                .server_domain = self.remote_domain,
                .port = self.port,
                .client_pages_max = self.pages_max,
            };
            send_message(connection, std.mem.asBytes(&hello), null) catch |err| {
                sys.close(connection);
                return err;
            };
            self.connection = connection;
            try self.epoll.add(connection, .connection, linux.EPOLL.IN | linux.EPOLL.RDHUP);
            self.phase = .handshake;
            self.withdraw_offer();
        }
        return self.client_handshake();
    }

    fn client_handshake(self: *Vchan) Fail!u32 {
        assert(self.phase == .handshake);
        var reply: Accept = undefined;
        // Room for one fd more than the protocol sends, to name a server that sends extra.
        var control = sys.CmsgBuffer(2){};
        const received = receive_message(
            self.connection,
            std.mem.asBytes(&reply),
            &control.bytes,
        ) orelse return 1;
        const fds = control.take_fds_any(received.control_bytes);
        if (received.bytes == 0) {
            for (fds.slice()) |descriptor| sys.close(descriptor);
            // The server went away (or chose another caller); a new one may still appear.
            self.epoll.drop(&self.connection);
            self.phase = .rendezvous;
            return 1;
        }
        // From here a failure is final; the memfd is ours to close (in `close`).
        if (fds.count >= 1) self.memfd = fds.items[0];
        for (fds.slice()[@min(fds.count, 1)..]) |descriptor| sys.close(descriptor);
        errdefer {
            self.peer_gone = true;
            self.cause.set(.closed, "{s}", .{diag.message()});
        }
        const layout = try self.accepted_layout(reply, received.bytes, fds.count);
        try check_memfd(self.memfd, layout.total_bytes());
        self.layout = layout;
        try self.map_shared(layout.total_bytes());
        try self.check_page();
        if (layout.right_order >= 12) {
            // We only read the right ring; mapping it read-only protects the server from our bugs.
            const start = layout.right_offset();
            _ = try sys.check(
                linux.mprotect(self.map.?.ptr + start, layout.right_bytes(), linux.PROT.READ),
                "mprotect",
            );
        }
        // Whatever the indices are at connect time is where we start; later checks keep them sane.
        self.setup_rings(
            @atomicLoad(u32, self.word(constants.offset_right_cons), .seq_cst),
            @atomicLoad(u32, self.word(constants.offset_left_prod), .seq_cst),
        );
        self.epoll.stop_watching(&self.watch, self.own_event);
        @atomicStore(u8, self.byte(constants.offset_srv_notify), constants.notify_write, .seq_cst);
        @atomicStore(u8, self.byte(constants.offset_cli_live), constants.live_connected, .seq_cst);
        self.phase = .mapped;
        self.epoll.modify(self.connection, .connection, linux.EPOLL.IN | linux.EPOLL.RDHUP);
        // The connect kick the Qubes wrapper sends.
        self.kick();
        return 0;
    }

    /// The ring layout of the server's ACCEPT, once it and its `fd_count` fds are checked.
    fn accepted_layout(
        self: *const Vchan,
        reply: Accept,
        bytes: usize,
        fd_count: usize,
    ) Fail!layout_mod.Layout {
        const foreign = reply.magic != constants.handshake_magic or
            reply.version != constants.handshake_version;
        if (bytes != @sizeOf(Accept) or foreign) {
            return diag.fail(
                .PROTO,
                "vchan server at {s} sent a malformed handshake",
                .{self.path()},
            );
        }
        if (reply.status != 0) {
            const errno: linux.E = @enumFromInt(reply.status);
            if (errno == .FBIG and self.pages_max != 0) {
                return diag.fail(
                    errno,
                    "vchan server at {s} has rings that need more pages than the page cap of {d}",
                    .{ self.path(), self.pages_max },
                );
            }
            return diag.fail(
                errno,
                "vchan server at {s} refused the connection: {s}",
                .{ self.path(), @tagName(errno) },
            );
        }
        if (fd_count != 1) {
            return diag.fail(
                .PROTO,
                "vchan server at {s} sent {d} fds with its accept; " ++
                    "protocol version {d} sends exactly one, the shared memory",
                .{ self.path(), fd_count, constants.handshake_version },
            );
        }
        const layout = layout_mod.validate(reply.left_order, reply.right_order) orelse {
            return diag.fail(
                .PROTO,
                "vchan server offers an impossible ring layout (orders {d}/{d})",
                .{ reply.left_order, reply.right_order },
            );
        };
        if (self.pages_max != 0 and layout.pages() > self.pages_max) {
            return diag.fail(
                .FBIG,
                "vchan server offers {d} pages; the page cap is {d}",
                .{ layout.pages(), self.pages_max },
            );
        }
        if (reply.shm_bytes != layout.total_bytes()) return diag.fail(
            .PROTO,
            "vchan server's memory size does not match its layout",
            .{},
        );
        return layout;
    }

    /// The page header must agree with what the handshake said; grants must be the page indices.
    fn check_page(self: *Vchan) Fail!void {
        const page = self.map.?;
        const left_order = std.mem.readInt(u16, page[constants.offset_left_order..][0..2], .little);
        const right_order = std.mem.readInt(
            u16,
            page[constants.offset_right_order..][0..2],
            .little,
        );
        if (left_order != self.layout.left_order or right_order != self.layout.right_order) {
            return diag.fail(
                .PROTO,
                "vchan page orders {d}/{d} differ from the handshake's",
                .{ left_order, right_order },
            );
        }
        var index: u32 = 0;
        while (index < self.layout.grants()) : (index += 1) {
            const grant = std.mem.readInt(
                u32,
                page[constants.offset_grants + 4 * index ..][0..4],
                .little,
            );
            if (grant != self.layout.grant(index)) return diag.fail(
                .PROTO,
                "vchan grant list entry {d} is wrong",
                .{index},
            );
        }
    }

    // ---------------------------------------------------------------- events

    fn byte(self: *Vchan, offset: u32) *u8 {
        assert(offset < constants.offset_grants);
        return &self.map.?[offset];
    }

    fn word(self: *Vchan, offset: u32) *u32 {
        assert(offset % 4 == 0 and offset < constants.offset_left_order);
        return @ptrCast(@alignCast(&self.map.?[offset]));
    }

    /// Ask the peer to kick us when it does `bit`: set it in the byte the peer tests.
    fn request_notify(self: *Vchan, bit: u8) void {
        const offset =
            if (self.role == .server) constants.offset_cli_notify else constants.offset_srv_notify;
        _ = @atomicRmw(u8, self.byte(offset), .Or, bit, .seq_cst);
    }

    /// We did `bit`; kick the peer only if it asked.
    fn send_notify(self: *Vchan, bit: u8) void {
        const offset =
            if (self.role == .server) constants.offset_srv_notify else constants.offset_cli_notify;
        const previous = @atomicRmw(u8, self.byte(offset), .And, ~bit, .seq_cst);
        if (previous & bit != 0) self.kick();
    }

    /// Never blocks, whatever the peer does (see the file comment). EAGAIN: the peer has kicks
    /// queued that it has not read, so it is due to wake anyway. EPIPE and the like: the peer is
    /// gone, which the socket's hang-up reports.
    fn kick(self: *Vchan) void {
        if (self.phase != .mapped or self.connection < 0) return;
        const one = [1]u8{1};
        const flags = linux.MSG.DONTWAIT | linux.MSG.NOSIGNAL;
        _ = linux.sendto(self.connection, &one, 1, flags, null, 0);
        self.stats.kicks +%= 1;
    }

    /// Reads every queued kick in one call (each is a 1-byte datagram; longer ones from a
    /// hostile peer are truncated, and any fds it attaches are discarded by the kernel, as we
    /// give no control buffer).
    fn drain_kicks(self: *Vchan) void {
        var bytes: [batch]u8 = undefined;
        var pieces: [batch]std.posix.iovec = undefined;
        var messages: [batch]linux.mmsghdr = undefined;
        for (&messages, &pieces, 0..) |*message, *piece, index| {
            piece.* = .{ .base = bytes[index..].ptr, .len = 1 };
            const header = linux.msghdr{
                .name = null,
                .namelen = 0,
                .iov = piece[0..1],
                .iovlen = 1,
                .control = null,
                .controllen = 0,
                .flags = 0,
            };
            message.* = .{ .hdr = header, .len = 0 };
        }
        // A full batch may leave more queued: the socket stays readable and the next poll says so.
        _ = linux.recvmmsg(self.connection, &messages, batch, linux.MSG.DONTWAIT, null);
        self.stats.wakeups +%= 1;
    }

    const batch = 16;

    /// The socket said something: kicks to take, or (also) the peer's hang-up.
    fn on_connection(self: *Vchan, events: u32) void {
        assert(self.phase == .mapped and self.connection >= 0);
        if (events & linux.EPOLL.IN != 0) self.drain_kicks();
        if (events & (linux.EPOLL.RDHUP | linux.EPOLL.HUP | linux.EPOLL.ERR) != 0) {
            self.peer_left("the peer's process closed its vchan socket");
        }
    }

    /// The fds a poll loop watches instead of `fd_for_select` (the pump): once mapped, the
    /// rendezvous socket itself (kicks and hang-up), so a wakeup costs no epoll_wait; before
    /// that (and after the peer left) the epoll fd.
    pub fn poll_fds(self: *const Vchan, out: *[2]i32) []i32 {
        const socket_ready = self.phase == .mapped and self.connection >= 0;
        out[0] = if (socket_ready) self.connection else self.epoll.fd;
        return out[0..1];
    }

    pub fn poll_events(self: *const Vchan) [2]i16 {
        _ = self;
        return .{ linux.POLL.IN | sys.POLLRDHUP, 0 };
    }

    /// Handles what poll reported for the fd `poll_fds` gave.
    pub fn on_poll(self: *Vchan, revents: []const i16) Fail!void {
        assert(revents.len == 1);
        if (revents[0] == 0) return;
        // The same test as `poll_fds` made: nothing since could have changed it.
        if (self.phase != .mapped or self.connection < 0) return self.wait_event(0);
        const seen: u16 = @bitCast(revents[0]);
        var events: u32 = 0;
        if (seen & linux.POLL.IN != 0) events |= linux.EPOLL.IN;
        if (seen & @as(u16, @bitCast(sys.POLLRDHUP)) != 0) events |= linux.EPOLL.RDHUP;
        const gone = linux.POLL.HUP | linux.POLL.ERR | linux.POLL.NVAL;
        if (seen & gone != 0) events |= linux.EPOLL.HUP;
        self.on_connection(events);
    }

    /// Sleeps on the epoll set until something happens (or `timeout_ms`), then handles it.
    pub fn wait_event(self: *Vchan, timeout_ms: i32) Fail!void {
        var events: [4]linux.epoll_event = undefined;
        const rc = linux.epoll_wait(self.epoll.fd, &events, events.len, timeout_ms);
        if (sys.errno_of(rc) == .INTR) return;
        const count = try sys.check(rc, "epoll_wait");
        if (timeout_ms != 0) self.stats.sleeps +%= 1;
        for (events[0..count]) |event| {
            switch (@as(Tag, @enumFromInt(event.data.u32))) {
                .own_event => {
                    // One read resets an eventfd's counter: no second read to see EAGAIN.
                    var counter: u64 = 0;
                    _ = linux.read(self.own_event, std.mem.asBytes(&counter), 8);
                },
                // An earlier event of this batch may have closed the fd an event is about.
                .listener => if (self.listener >= 0) try self.server_accept(),
                .connection => if (self.connection >= 0) switch (self.phase) {
                    .handshake => if (self.role == .server) try self.server_handshake(),
                    .mapped => self.on_connection(event.events),
                    .rendezvous => {},
                },
                .watch => dir_watch.drain_and_kick(),
                .offer => if (self.offer >= 0 and self.phase == .rendezvous) try self.take_offer(),
            }
        }
    }

    /// Xen's unmap-notify, emulated: the peer is gone, so its live byte is 0 from now on.
    fn peer_left(self: *Vchan, why: []const u8) void {
        if (self.peer_gone) return;
        self.peer_gone = true;
        if (self.cause.kind == .none) self.cause.set(.closed, "{s}", .{why});
        if (self.map != null) {
            const offset =
                if (self.role == .server) constants.offset_cli_live else constants.offset_srv_live;
            @atomicStore(u8, self.byte(offset), constants.live_exited, .seq_cst);
        }
        self.epoll.drop(&self.connection);
    }

    fn violation(self: *Vchan, comptime fmt: []const u8, args: anytype) Fail {
        self.cause.set(.violation, "peer protocol error: " ++ fmt, args);
        self.peer_left("peer protocol error");
        return diag.fail(.PROTO, "peer protocol error: " ++ fmt, args);
    }

    pub fn reason(self: *const Vchan) []const u8 {
        return self.cause.slice();
    }

    fn peer_closed(self: *Vchan) State {
        if (self.cause.kind == .none) self.cause.set(.closed, "the peer closed the vchan", .{});
        return .disconnected;
    }

    /// When the rendezvous socket has hung up without anyone calling `wait`, notice it now.
    fn check_connection(self: *Vchan) void {
        if (self.connection < 0 or self.peer_gone) return;
        var poll_fd = [_]linux.pollfd{
            .{ .fd = self.connection, .events = sys.POLLRDHUP, .revents = 0 },
        };
        const rc = linux.poll(&poll_fd, 1, 0);
        if (sys.errno_of(rc) != .SUCCESS or rc == 0) return;
        if (poll_fd[0].revents & (sys.POLLRDHUP | linux.POLL.HUP | linux.POLL.ERR) != 0) {
            self.peer_left("the peer's process closed its vchan socket");
        }
    }

    // ---------------------------------------------------------------- libvchan API

    /// libvchan_is_open. Besides the peer's live byte it asks the kernel whether the peer's
    /// process still holds its socket, as the Xen wrapper asks about the event channel.
    pub fn state(self: *Vchan) State {
        const live = self.state_from_page();
        if (live != .connected) return live;
        self.check_connection();
        return if (self.peer_gone) .disconnected else .connected;
    }

    /// The state as the shared page tells it, without a syscall (for the fast paths). For a
    /// caller that polls `fd_for_select` and calls `wait_event` whenever it fires (the pump),
    /// this is as current as `state`: a hang-up of the rendezvous socket wakes that poll.
    pub fn state_from_page(self: *Vchan) State {
        if (self.peer_gone) return .disconnected;
        if (self.phase != .mapped) return .waiting;
        switch (self.role) {
            .server => {
                const live = @atomicLoad(u8, self.byte(constants.offset_cli_live), .seq_cst);
                if (live == constants.live_connected) {
                    self.seen_connected = true;
                } else if (live == constants.live_waiting and !self.seen_connected) {
                    return .waiting;
                } else {
                    return self.peer_closed();
                }
            },
            .client => {
                const live = @atomicLoad(u8, self.byte(constants.offset_srv_live), .seq_cst);
                if (live != constants.live_connected) return self.peer_closed();
            },
        }
        return .connected;
    }

    pub fn fd_for_select(self: *const Vchan) i32 {
        return self.epoll.fd;
    }

    /// Bytes ready to read, or a violation.
    fn read_ready(self: *Vchan) Fail!u32 {
        const untrusted_prod = self.read_ring.load_peer();
        return self.read_ring.used_as_reader(untrusted_prod) orelse self.violation(
            "read ring producer index {d} is {d} bytes ahead of consumer {d}; the ring holds {d}",
            .{
                untrusted_prod,
                untrusted_prod -% self.read_ring.local,
                self.read_ring.local,
                self.read_ring.size,
            },
        );
    }

    fn write_space(self: *Vchan) Fail!u32 {
        const untrusted_cons = self.write_ring.load_peer();
        const used = self.write_ring.used_as_writer(untrusted_cons) orelse return self.violation(
            "write ring consumer index {d} is not within {d} bytes behind producer {d}",
            .{ untrusted_cons, self.write_ring.size, self.write_ring.local },
        );
        return self.write_ring.size - used;
    }

    pub fn data_ready(self: *Vchan) u32 {
        if (self.phase != .mapped or self.cause.kind == .violation) return 0;
        self.request_notify(constants.notify_write);
        return self.read_ready() catch 0;
    }

    pub fn buffer_space(self: *Vchan) u32 {
        // A waiting server already has its rings and may write; an unmapped client has none.
        if (self.map == null or self.peer_gone) return 0;
        self.request_notify(constants.notify_read);
        return self.write_space() catch 0;
    }

    /// `data_ready` without asking the peer for a kick: for a caller that arms the notification
    /// (with `data_ready`) only when it is about to wait, so a busy peer is not made to kick it
    /// after every write.
    pub fn peek_data_ready(self: *Vchan) u32 {
        if (self.phase != .mapped or self.cause.kind == .violation) return 0;
        return self.read_ready() catch 0;
    }

    /// `buffer_space` without asking the peer for a kick (see `peek_data_ready`).
    pub fn peek_buffer_space(self: *Vchan) u32 {
        if (self.map == null or self.peer_gone) return 0;
        return self.write_space() catch 0;
    }

    fn require_mapped(self: *Vchan) Fail!void {
        if (self.phase != .mapped and self.role == .client) {
            return diag.fail(
                .NOTCONN,
                "vchan to domain {d} port {d} is not connected yet",
                .{ self.remote_domain, self.port },
            );
        }
        if (self.cause.kind == .violation) return diag.fail(.PROTO, "{s}", .{self.reason()});
    }

    fn closed_failure(self: *const Vchan) Fail {
        return self.cause.closed_failure(self.remote_domain, self.port);
    }

    /// Server only, before a client came: the shared page exists but nobody maps it yet.
    fn waiting_server(self: *const Vchan) bool {
        return self.role == .server and self.phase != .mapped;
    }

    pub fn read(self: *Vchan, target: []u8) Fail!u32 {
        try self.require_mapped();
        if (target.len == 0) return 0;
        while (true) {
            const ready = try self.read_ready();
            if (ready > 0) {
                const count: u32 = @intCast(@min(ready, target.len));
                self.read_ring.copy_out(target[0..count]);
                self.stats.bytes_read +%= count;
                self.send_notify(constants.notify_read);
                return count;
            }
            // Data is checked before liveness: a closed peer's last bytes are still delivered.
            if (self.state() == .disconnected) return self.closed_failure();
            if (!self.blocking) return 0;
            try self.sleep_until(.readable, 1);
        }
    }

    pub fn recv(self: *Vchan, target: []u8) Fail!u32 {
        try self.require_mapped();
        if (target.len > self.read_ring.size) {
            return diag.fail(
                .MSGSIZE,
                "recv of {d} bytes can never complete: the read ring holds {d}",
                .{ target.len, self.read_ring.size },
            );
        }
        const wanted: u32 = @intCast(target.len);
        while (true) {
            const ready = try self.read_ready();
            if (ready >= wanted) {
                self.read_ring.copy_out(target);
                self.stats.bytes_read +%= wanted;
                if (wanted > 0) self.send_notify(constants.notify_read);
                return wanted;
            }
            if (self.state() == .disconnected) return self.closed_failure();
            if (!self.blocking) return 0;
            try self.sleep_until(.readable, wanted);
        }
    }

    pub fn write(self: *Vchan, source: []const u8) Fail!u32 {
        try self.require_mapped();
        if (self.state_from_page() == .disconnected) return self.closed_failure();
        var written: u32 = 0;
        while (written < source.len) {
            const space = try self.write_space();
            if (space > 0) {
                const count: u32 = @intCast(@min(space, source.len - written));
                self.write_ring.copy_in(source[written..][0..count]);
                written += count;
                self.stats.bytes_written +%= count;
                self.send_notify(constants.notify_write);
                continue;
            }
            if (self.state() == .disconnected) return self.closed_failure();
            if (!self.blocking) break;
            try self.sleep_until(.writable, 1);
        }
        return written;
    }

    pub fn send(self: *Vchan, source: []const u8) Fail!u32 {
        try self.require_mapped();
        if (source.len > self.write_ring.size) {
            return diag.fail(
                .MSGSIZE,
                "send of {d} bytes can never complete: the write ring holds {d}",
                .{ source.len, self.write_ring.size },
            );
        }
        const wanted: u32 = @intCast(source.len);
        while (true) {
            if (self.state_from_page() == .disconnected) return self.closed_failure();
            const space = try self.write_space();
            if (space >= wanted) {
                self.write_ring.copy_in(source);
                self.stats.bytes_written +%= wanted;
                if (wanted > 0) self.send_notify(constants.notify_write);
                return wanted;
            }
            if (!self.blocking) return 0;
            if (self.state() == .disconnected) return self.closed_failure();
            try self.sleep_until(.writable, wanted);
        }
    }

    // ---------------------------------------------------------------- zero-copy (the pump)
    //
    // The pump moves bytes between a local fd and the rings with readv/writev on the ring memory
    // itself, instead of bouncing them through a buffer. Only our private indices decide where;
    // the peer can scribble on ring bytes at any time, which only changes the data it is sent
    // or sends, so nothing read through a window is trusted beyond being bytes.

    /// Free write-ring space, `count` bytes starting `skip` past our producer index. The caller
    /// has seen `peek_buffer_space() >= skip + count`; nothing is published until `commit_write`.
    pub fn write_window(
        self: *Vchan,
        skip: u32,
        count: u32,
        pieces: *[2]std.posix.iovec,
    ) []std.posix.iovec {
        assert(self.map != null);
        return self.write_ring.window(skip, count, pieces);
    }

    /// Puts `header` in front of the `count` bytes already placed through `write_window(header.len,
    /// ...)` and publishes both, kicking the peer if it asked. Fails like `write` when the peer
    /// is gone.
    pub fn commit_write(self: *Vchan, header: []const u8, count: u32) Fail!void {
        try self.require_mapped();
        if (self.state_from_page() == .disconnected) return self.closed_failure();
        const total: u32 = @intCast(header.len + count);
        // Our index and the size bound the space; a peer that moved its consumer backwards since
        // the caller looked is refused like any other impossible index.
        if (try self.write_space() < total) return self.violation(
            "write ring consumer moved backwards (space below {d} bytes already offered)",
            .{total},
        );
        var pieces: [2]std.posix.iovec = undefined;
        var offset: usize = 0;
        for (self.write_ring.window(0, @intCast(header.len), &pieces)) |piece| {
            @memcpy(piece.base[0..piece.len], header[offset..][0..piece.len]);
            offset += piece.len;
        }
        assert(offset == header.len);
        self.write_ring.publish(total);
        self.stats.bytes_written +%= total;
        self.send_notify(constants.notify_write);
    }

    /// Ready read-ring bytes, the first `count` of them. The caller has seen
    /// `peek_data_ready() >= count`; they stay in the ring until `commit_read`.
    pub fn read_window(self: *Vchan, count: u32, pieces: *[2]std.posix.iovec) []std.posix.iovec {
        assert(self.phase == .mapped);
        return self.read_ring.window(0, count, pieces);
    }

    /// Consumes `count` bytes seen through `read_window` and kicks the peer if it asked.
    pub fn commit_read(self: *Vchan, count: u32) void {
        assert(self.phase == .mapped);
        if (count == 0) return;
        self.read_ring.publish(count);
        self.stats.bytes_read +%= count;
        self.send_notify(constants.notify_read);
    }

    const Want = enum { readable, writable };

    fn ready_for(self: *Vchan, want: Want, amount: u32) Fail!bool {
        return switch (want) {
            .readable => try self.read_ready() >= amount,
            .writable => try self.write_space() >= amount,
        };
    }

    /// Waits until the ring may have `amount` bytes (or space), or the peer changed state.
    /// Spins first when that has been paying off, then arms the notify bit, re-checks (the peer
    /// may have acted between our check and the arming) and sleeps on the event fd.
    fn sleep_until(self: *Vchan, want: Want, amount: u32) Fail!void {
        if (self.phase == .mapped and try self.spin_until(want, amount)) return;
        if (self.phase == .mapped) {
            self.request_notify(
                if (want == .readable) constants.notify_write else constants.notify_read,
            );
            if (try self.ready_for(want, amount)) return;
        }
        try self.wait_event(-1);
    }

    fn spin_until(self: *Vchan, want: Want, amount: u32) Fail!bool {
        const budget = self.spin.budget();
        if (budget == 0) return false;
        const live_offset =
            if (self.role == .server) constants.offset_cli_live else constants.offset_srv_live;
        const live_before = @atomicLoad(u8, self.byte(live_offset), .monotonic);
        const start = sys.now_ns();
        var iteration: u32 = 0;
        while (true) : (iteration +%= 1) {
            if (try self.ready_for(want, amount) or
                @atomicLoad(u8, self.byte(live_offset), .monotonic) != live_before)
            {
                self.spin.hit();
                self.stats.spin_hits +%= 1;
                return true;
            }
            std.atomic.spinLoopHint();
            if (iteration % 64 == 63 and sys.now_ns() - start > budget) {
                self.spin.miss();
                self.stats.spin_misses +%= 1;
                return false;
            }
        }
    }

    /// libvchan_wait: handle one batch of pending events, sleeping if there is none.
    pub fn wait(self: *Vchan) Fail!void {
        if (self.state() == .disconnected) return;
        try self.wait_event(-1);
        if (self.role == .client and self.phase != .mapped) _ = try self.finish();
    }

    /// Waits until connected, for at most `timeout_ms` (negative: no limit).
    pub fn connect_wait(self: *Vchan, timeout_ms: i32) Fail!void {
        const deadline = backend_common.ConnectDeadline.init(timeout_ms);
        while (true) {
            if (self.role == .client and self.phase != .mapped) {
                if (try self.finish() == 0) return;
            } else switch (self.state()) {
                .connected => return,
                .disconnected => return self.closed_failure(),
                .waiting => {},
            }
            try self.wait_event(try deadline.remaining_ms(self.role == .client, self.path()));
        }
    }

    pub fn close(self: *Vchan) void {
        if (self.map != null and self.phase == .mapped) {
            const offset =
                if (self.role == .server) constants.offset_srv_live else constants.offset_cli_live;
            @atomicStore(u8, self.byte(offset), constants.live_exited, .seq_cst);
            self.kick();
        }
        // Still listening: our name is in the directory, and nobody will ever connect to it.
        if (self.role == .server and self.listener >= 0) _ = linux.unlink(self.path());
        self.withdraw_offer();
        if (self.map) |map| _ = linux.munmap(map.ptr, map.len);
        self.map = null;
        // Before own_event closes: the shared watch kicks it.
        self.epoll.stop_watching(&self.watch, self.own_event);
        inline for (.{ "connection", "listener", "own_event", "memfd" }) |name| {
            sys.close(@field(self, name));
            @field(self, name) = -1;
        }
        self.epoll.close();
    }

    /// Test hook: start both rings at `index` so wraparound of the u32 indices can be tested
    /// without pushing 4 GiB. Only valid before any data moved.
    pub fn debug_set_indices(self: *Vchan, index: u32) void {
        assert(self.phase == .mapped);
        inline for (.{
            constants.offset_left_cons,
            constants.offset_left_prod,
            constants.offset_right_cons,
            constants.offset_right_prod,
        }) |offset| {
            @atomicStore(u32, self.word(offset), index, .seq_cst);
        }
        self.read_ring.local = index;
        self.write_ring.local = index;
    }

    /// Test hook: write a u32 into the shared page, as a hostile peer could.
    pub fn debug_poke(self: *Vchan, offset: u32, value: u32) Fail!void {
        if (self.map == null) return diag.fail(.NOTCONN, "no shared page yet", .{});
        if (offset % 4 != 0 or offset + 4 > constants.page_bytes) return diag.fail(
            .INVAL,
            "offset {d} is not a u32 in page 0",
            .{offset},
        );
        @atomicStore(u32, @as(*u32, @ptrCast(@alignCast(&self.map.?[offset]))), value, .seq_cst);
    }
};

// -------------------------------------------------------------------- helpers

/// The memfd from the server must be as big as the layout needs and unable to shrink, or a
/// hostile server could make our accesses fault.
fn check_memfd(memfd: i32, expected_bytes: u32) Fail!void {
    var stat: linux.Stat = undefined;
    _ = try sys.check(linux.fstat(memfd, &stat), "fstat");
    if (!linux.S.ISREG(stat.mode)) {
        return diag.fail(.PROTO, "vchan shared memory is not a memfd (mode 0o{o})", .{stat.mode});
    }
    // Only shmem files (a memfd) take seals: anything else fails here.
    const seals = linux.fcntl(memfd, sys.F_GET_SEALS, 0);
    const seals_errno = sys.errno_of(seals);
    if (seals_errno != .SUCCESS) {
        const what = "vchan shared memory is not a memfd (F_GET_SEALS: {s})";
        return diag.fail(.PROTO, what, .{@tagName(seals_errno)});
    }
    if (stat.size < expected_bytes) return diag.fail(
        .PROTO,
        "vchan shared memory is {d} bytes, {d} expected",
        .{ stat.size, expected_bytes },
    );
    if (seals & sys.F_SEAL_SHRINK == 0) return diag.fail(
        .PROTO,
        "vchan shared memory is not sealed against shrinking",
        .{},
    );
}

const Received = struct { bytes: usize, control_bytes: usize };

/// One datagram, or null when none is waiting yet. A failed read counts as a hang-up (0 bytes).
fn receive_message(descriptor: i32, buffer: []u8, control: []u8) ?Received {
    const received = sys.receive_one(
        descriptor,
        buffer,
        control,
        linux.MSG.CMSG_CLOEXEC | linux.MSG.DONTWAIT,
    );
    switch (sys.errno_of(received.rc)) {
        .SUCCESS => {},
        .AGAIN, .INTR => return null,
        else => return .{ .bytes = 0, .control_bytes = 0 },
    }
    // A truncated datagram or control block is malformed; report a size that fails validation.
    if (received.flags & (linux.MSG.TRUNC | linux.MSG.CTRUNC) != 0) return .{
        .bytes = buffer.len + 1,
        .control_bytes = received.control_bytes,
    };
    return .{ .bytes = received.rc, .control_bytes = received.control_bytes };
}

fn send_message(descriptor: i32, data: []const u8, control: ?[]const u8) Fail!void {
    const rc = sys.send_one(descriptor, data, control, linux.MSG.NOSIGNAL | linux.MSG.DONTWAIT);
    const sent = try sys.check(rc, "sendmsg");
    if (sent != data.len) return diag.fail(.PROTO, "short sendmsg", .{});
}

test "spin: a probe that finds work turns spinning back on at the probe's budget" {
    var spin = Spin{ .max_ns = 40_000, .budget_ns = 0 };
    var sleeps: u32 = 1;
    while (sleeps < Spin.probe_after_sleeps) : (sleeps += 1) try std.testing.expectEqual(
        @as(u32, 0),
        spin.budget(),
    );
    try std.testing.expectEqual(@as(u32, 10_000), spin.budget());
    spin.hit();
    try std.testing.expectEqual(@as(u32, 20_000), spin.budget());
    spin.miss();
    spin.miss();
    spin.miss();
    try std.testing.expectEqual(@as(u32, 2_500), spin.budget());
    spin.miss();
    spin.miss();
    try std.testing.expectEqual(@as(u32, 0), spin.budget());
}

//! Either vchan backend behind one type, chosen per vchan at run time (vchan.md §5.2): the pump
//! and the C ABI hold a `*Vchan` and never care which it is. A tagged union rather than a
//! vtable, because there are exactly two backends and `inline else` keeps every call direct.
//!
//! Both backends share `Options`, `Role` and `Stats` (defined in shm.zig) and the libvchan
//! method set; what only one of them has is reached through the accessors below, which give a
//! neutral answer (or ENOTSUP for the shm test hooks) on the other.
const std = @import("std");

const constants = @import("../constants.zig");
const diag = @import("../diag.zig");
pub const shm = @import("shm.zig");
pub const socket = @import("socket.zig");
const layout_mod = @import("layout.zig");

const Fail = diag.Fail;
const State = constants.State;
pub const Role = shm.Role;
pub const Options = shm.Options;
pub const Stats = shm.Stats;
pub const Layout = layout_mod.Layout;

/// Ids cross the C ABI (`vx_server_init`, `vx_client_init_async`) and src/constants.ts.
pub const Backend = enum(u32) { shm = 0, socket = 1 };

pub fn backend_from_id(id: u32) Fail!Backend {
    return std.meta.intToEnum(Backend, id) catch diag.fail(
        .INVAL,
        "unknown vchan backend {d} (0 = shm, 1 = socket)",
        .{id},
    );
}

pub const Vchan = union(Backend) {
    shm: shm.Vchan,
    socket: socket.Vchan,

    // ---------------------------------------------------------------- set-up

    pub fn server_init(self: *Vchan, backend_id: Backend, options: Options) Fail!void {
        switch (backend_id) {
            inline else => |tag| {
                self.* = @unionInit(Vchan, @tagName(tag), undefined);
                try @field(self, @tagName(tag)).server_init(options);
            },
        }
    }

    /// Asynchronous on both backends: `finish` (or `connect_wait`) completes it.
    pub fn client_init(self: *Vchan, backend_id: Backend, options: Options) Fail!void {
        switch (backend_id) {
            inline else => |tag| {
                self.* = @unionInit(Vchan, @tagName(tag), undefined);
                try @field(self, @tagName(tag)).client_init(options);
            },
        }
    }

    // ---------------------------------------------------------------- libvchan API

    pub fn finish(self: *Vchan) Fail!u32 {
        return switch (self.*) {
            inline else => |*v| v.finish(),
        };
    }

    pub fn connect_wait(self: *Vchan, timeout_ms: i32) Fail!void {
        return switch (self.*) {
            inline else => |*v| v.connect_wait(timeout_ms),
        };
    }

    pub fn state(self: *Vchan) State {
        return switch (self.*) {
            inline else => |*v| v.state(),
        };
    }

    /// `state` for a caller that polls `fd_for_select` and calls `wait_event(0)` whenever it
    /// fires: then the shm page and the events already handled say everything, and the shm
    /// backend skips its per-call poll of the rendezvous socket. The socket backend needs its
    /// `state` (it pulls input to see EOF).
    pub fn state_polled(self: *Vchan) State {
        return switch (self.*) {
            .shm => |*v| v.state_from_page(),
            .socket => |*v| v.state(),
        };
    }

    /// Nothing written from now on can reach the peer: shm, the peer left (the page says so);
    /// socket, the peer stopped taking data or closed (the socket backend reports DISCONNECTED
    /// only once its read ring is drained, which a backed-up call never does).
    pub fn peer_gone_for_writing(self: *Vchan) bool {
        return switch (self.*) {
            .shm => |*v| v.state_from_page() == .disconnected,
            .socket => |*v| v.write_failed or v.read_ended,
        };
    }

    pub fn fd_for_select(self: *const Vchan) i32 {
        return switch (self.*) {
            inline else => |*v| v.fd_for_select(),
        };
    }

    /// For a poll loop (the pump): the fds to watch, one or two, with `poll_events` as the
    /// events and `on_poll` afterwards instead of `wait_event(0)`. shm gives its rendezvous
    /// socket once mapped (one syscall less per wakeup); otherwise this is `fd_for_select`.
    pub fn poll_fds(self: *const Vchan, out: *[2]i32) []i32 {
        return switch (self.*) {
            .shm => |*v| v.poll_fds(out),
            .socket => |*v| blk: {
                out[0] = v.fd_for_select();
                break :blk out[0..1];
            },
        };
    }

    pub fn poll_events(self: *const Vchan) [2]i16 {
        return switch (self.*) {
            .shm => |*v| v.poll_events(),
            .socket => .{ std.os.linux.POLL.IN, 0 },
        };
    }

    pub fn on_poll(self: *Vchan, revents: []const i16) Fail!void {
        return switch (self.*) {
            .shm => |*v| v.on_poll(revents),
            .socket => |*v| if (revents[0] != 0) v.wait_event(0),
        };
    }

    pub fn wait_event(self: *Vchan, timeout_ms: i32) Fail!void {
        return switch (self.*) {
            inline else => |*v| v.wait_event(timeout_ms),
        };
    }

    pub fn wait(self: *Vchan) Fail!void {
        return switch (self.*) {
            inline else => |*v| v.wait(),
        };
    }

    pub fn data_ready(self: *Vchan) u32 {
        return switch (self.*) {
            inline else => |*v| v.data_ready(),
        };
    }

    pub fn buffer_space(self: *Vchan) u32 {
        return switch (self.*) {
            inline else => |*v| v.buffer_space(),
        };
    }

    /// `data_ready` without arming the peer's kick (shm); the socket backend has no kicks.
    pub fn peek_data_ready(self: *Vchan) u32 {
        return switch (self.*) {
            .shm => |*v| v.peek_data_ready(),
            .socket => |*v| v.data_ready(),
        };
    }

    /// Room a server may write into before its client has come, as libxenvchan's may (its
    /// rings exist from the start): shm's rings; the socket backend has none to offer.
    pub fn waiting_space(self: *Vchan) u32 {
        return switch (self.*) {
            .shm => |*v| if (v.role == .server) v.peek_buffer_space() else 0,
            .socket => 0,
        };
    }

    /// `buffer_space` without arming the peer's kick (shm); the socket backend has no kicks.
    pub fn peek_buffer_space(self: *Vchan) u32 {
        return switch (self.*) {
            .shm => |*v| v.peek_buffer_space(),
            .socket => |*v| v.buffer_space(),
        };
    }

    /// Zero-copy writing into the ring (shm only; null on socket, which has its own copying):
    /// see `shm.Vchan.write_window` and `commit_write`.
    pub fn write_window(
        self: *Vchan,
        skip: u32,
        count: u32,
        pieces: *[2]std.posix.iovec,
    ) ?[]std.posix.iovec {
        return switch (self.*) {
            .shm => |*v| v.write_window(skip, count, pieces),
            .socket => null,
        };
    }

    pub fn commit_write(self: *Vchan, header: []const u8, count: u32) Fail!void {
        return switch (self.*) {
            .shm => |*v| v.commit_write(header, count),
            .socket => unreachable,
        };
    }

    /// Zero-copy reading from the ring (shm only; null on socket).
    pub fn read_window(self: *Vchan, count: u32, pieces: *[2]std.posix.iovec) ?[]std.posix.iovec {
        return switch (self.*) {
            .shm => |*v| v.read_window(count, pieces),
            .socket => null,
        };
    }

    pub fn commit_read(self: *Vchan, count: u32) void {
        switch (self.*) {
            .shm => |*v| v.commit_read(count),
            .socket => unreachable,
        }
    }

    pub fn read(self: *Vchan, target: []u8) Fail!u32 {
        return switch (self.*) {
            inline else => |*v| v.read(target),
        };
    }

    pub fn recv(self: *Vchan, target: []u8) Fail!u32 {
        return switch (self.*) {
            inline else => |*v| v.recv(target),
        };
    }

    pub fn write(self: *Vchan, source: []const u8) Fail!u32 {
        return switch (self.*) {
            inline else => |*v| v.write(source),
        };
    }

    pub fn send(self: *Vchan, source: []const u8) Fail!u32 {
        return switch (self.*) {
            inline else => |*v| v.send(source),
        };
    }

    pub fn reason(self: *const Vchan) []const u8 {
        return switch (self.*) {
            inline else => |*v| v.reason(),
        };
    }

    pub fn path(self: *const Vchan) [:0]const u8 {
        return switch (self.*) {
            inline else => |*v| v.path(),
        };
    }

    pub fn close(self: *Vchan) void {
        switch (self.*) {
            inline else => |*v| v.close(),
        }
    }

    // ---------------------------------------------------------------- accessors

    pub fn backend(self: *const Vchan) Backend {
        return std.meta.activeTag(self.*);
    }

    pub fn role(self: *const Vchan) Role {
        return switch (self.*) {
            inline else => |*v| v.role,
        };
    }

    pub fn local_domain(self: *const Vchan) i32 {
        return switch (self.*) {
            inline else => |*v| v.local_domain,
        };
    }

    pub fn remote_domain(self: *const Vchan) i32 {
        return switch (self.*) {
            inline else => |*v| v.remote_domain,
        };
    }

    pub fn port(self: *const Vchan) i32 {
        return switch (self.*) {
            inline else => |*v| v.port,
        };
    }

    pub fn is_blocking(self: *const Vchan) bool {
        return switch (self.*) {
            inline else => |*v| v.blocking,
        };
    }

    pub fn set_blocking(self: *Vchan, on: bool) void {
        switch (self.*) {
            inline else => |*v| v.blocking = on,
        }
    }

    /// 0 while an shm client has no mapping yet (there are no rings before it).
    pub fn read_ring_bytes(self: *const Vchan) u32 {
        return switch (self.*) {
            .shm => |*v| if (shm_has_rings(v)) v.read_ring.size else 0,
            .socket => |*v| v.read_ring_bytes(),
        };
    }

    /// What a whole message must fit into: the peer's ring on shm, our local ring on socket.
    pub fn write_ring_bytes(self: *const Vchan) u32 {
        return switch (self.*) {
            .shm => |*v| if (shm_has_rings(v)) v.write_ring.size else 0,
            .socket => |*v| v.write_ring_bytes(),
        };
    }

    /// Bytes written but still on our side: always 0 on shm, where a write lands in the peer's
    /// memory; on socket what the kernel has not taken yet, which a close could lose.
    pub fn unsent_bytes(self: *const Vchan) u32 {
        return switch (self.*) {
            .shm => 0,
            .socket => |*v| v.unsent_bytes(),
        };
    }

    /// Ring orders and page count: shm only, once it has rings.
    pub fn layout(self: *const Vchan) ?Layout {
        return switch (self.*) {
            .shm => |*v| if (shm_has_rings(v)) v.layout else null,
            .socket => null,
        };
    }

    /// Both backends count kicks, wakeups and sleeps; only shm spins.
    pub fn stats(self: *const Vchan) Stats {
        return switch (self.*) {
            inline else => |*v| v.stats,
        };
    }

    pub fn spin_budget_ns(self: *const Vchan) u32 {
        return switch (self.*) {
            .shm => |*v| v.spin.budget_ns,
            .socket => 0,
        };
    }

    // ---------------------------------------------------------------- shm test hooks

    pub fn debug_poke(self: *Vchan, offset: u32, value: u32) Fail!void {
        return switch (self.*) {
            .shm => |*v| v.debug_poke(offset, value),
            .socket => not_shared("debug_poke"),
        };
    }

    pub fn debug_set_indices(self: *Vchan, index: u32) Fail!void {
        switch (self.*) {
            .shm => |*v| v.debug_set_indices(index),
            .socket => return not_shared("debug_set_indices"),
        }
    }

    fn not_shared(comptime what: []const u8) Fail {
        return diag.fail(
            .OPNOTSUPP,
            what ++ " needs a shared page; the socket vchan has none",
            .{},
        );
    }
};

/// A server has its rings from init; a client once the handshake mapped the page.
fn shm_has_rings(v: *const shm.Vchan) bool {
    return v.map != null and (v.role == .server or v.phase == .mapped);
}

test "vchan: backend ids are checked" {
    try std.testing.expectEqual(Backend.shm, try backend_from_id(0));
    try std.testing.expectEqual(Backend.socket, try backend_from_id(1));
    try std.testing.expectError(error.Fail, backend_from_id(2));
    try std.testing.expectEqual(@as(i32, @intFromEnum(std.os.linux.E.INVAL)), diag.errno());
    try std.testing.expect(std.mem.indexOf(u8, diag.message(), "unknown vchan backend 2") != null);
}

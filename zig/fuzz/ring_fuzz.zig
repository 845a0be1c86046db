//! Harness `ring`: the shm vchan's ring reader and writer (zig/vchan/shm.zig) against a peer
//! that writes the shared page as it likes: honest writes, producer and consumer indices moved
//! anywhere, our own published index scribbled on. Properties: a read never returns more than
//! the peer published, nor other bytes than the ring holds there; an impossible index is refused
//! (and from then on everything fails) instead of being used; a write never overwrites bytes
//! the peer has not consumed; readiness never exceeds the ring.
const std = @import("std");
const constants = @import("../constants.zig");
const pair_mod = @import("pair.zig");
const Input = @import("input.zig").Input;
const check = @import("check.zig");

var pairs: ?[2]pair_mod.Pair = null;

const Model = struct {
    victim: *pair_mod.Vchan,
    page: []u8,
    /// The victim's consumer index as it must be (only successful reads move it).
    cons: u32,
    /// The victim's producer index on its write ring.
    prod: u32,
    violated: bool = false,

    fn ring(self: *const Model) []u8 {
        const r = self.victim.shm.read_ring;
        return r.bytes[0..r.size];
    }

    fn out_ring_size(self: *const Model) u32 {
        return self.victim.shm.write_ring.size;
    }

    fn peer_prod(self: *const Model) u32 {
        return std.mem.readInt(u32, self.page[constants.offset_left_prod..][0..4], .little);
    }

    fn peer_cons(self: *const Model) u32 {
        return std.mem.readInt(u32, self.page[constants.offset_right_cons..][0..4], .little);
    }

    fn poke(self: *Model, offset: u32, value: u32) void {
        @atomicStore(u32, @as(*u32, @ptrCast(@alignCast(&self.page[offset]))), value, .seq_cst);
    }

    /// Bytes the peer published for us, or null when its index is impossible.
    fn published(self: *const Model) ?u32 {
        const used = self.peer_prod() -% self.cons;
        return if (used > self.ring().len) null else used;
    }
};

pub fn run(bytes: []const u8) void {
    const both = pairs orelse blk: {
        // An in-page ring (1024 bytes) and separate pages (8192), as libxenvchan lays them out.
        pairs = .{ pair_mod.connect(1024, 2048), pair_mod.connect(8192, 4096) };
        break :blk pairs.?;
    };
    var input = Input.init(bytes);
    const pair = both[input.int(u8) & 1];
    const start = input.int(u32);
    pair_mod.reset(pair, start);
    var model = Model{
        .victim = pair.server,
        .page = pair.server.shm.map.?,
        .cons = start,
        .prod = start,
    };
    var ops: u32 = 0;
    while (!input.done() and ops < 256) : (ops += 1) step(&model, &input);
}

fn step(model: *Model, input: *Input) void {
    const size: u32 = @intCast(model.ring().len);
    switch (input.int(u8) % 8) {
        0 => honest_write(model, input),
        1 => model.poke(constants.offset_left_prod, near(model.cons, input.int(u32), size)),
        2 => model.poke(constants.offset_left_prod, input.int(u32)),
        3 => model.poke(constants.offset_left_cons, input.int(u32)), // our index: must not matter
        4 => victim_read(model, input.int(u16) % (size + 9), false),
        5 => victim_read(model, input.int(u16) % (size + 9), true),
        6 => victim_window(model, input.int(u16)),
        else => victim_write(model, input),
    }
}

/// An index within a few bytes either side of the legal range around `index`.
fn near(index: u32, choice: u32, size: u32) u32 {
    return index +% (choice % (2 * size + 17)) -% (size + 8);
}

fn honest_write(model: *Model, input: *Input) void {
    const ring = model.ring();
    const free = if (model.published()) |used| ring.len - used else return;
    const chunk = input.take(@min(free, input.int(u16) % 256));
    var prod = model.peer_prod();
    for (chunk) |byte| {
        ring[prod & (ring.len - 1)] = byte;
        prod +%= 1;
    }
    model.poke(constants.offset_left_prod, prod);
}

fn victim_read(model: *Model, want: u32, all_or_nothing: bool) void {
    var buffer: [8192 + 16]u8 = undefined;
    const ring = model.ring();
    const published = model.published();
    const target = buffer[0..want];
    const result = if (all_or_nothing) model.victim.recv(target) else model.victim.read(target);
    const got = result catch {
        const too_big = all_or_nothing and want > ring.len;
        const impossible = published == null or model.violated or too_big;
        check.that(
            impossible,
            "read of {d} failed with {?d} bytes published",
            .{ want, published },
        );
        if (published == null) model.violated = true;
        if (published == null or model.violated) {
            check.that(model.victim.data_ready() == 0, "data ready after a refused index", .{});
        }
        return;
    };
    if (want == 0) return check.that(got == 0, "read {d} of nothing", .{got});
    check.that(!model.violated, "read succeeded after a violation", .{});
    const available = published orelse {
        check.that(false, "read {d} bytes past an impossible index", .{got});
        unreachable;
    };
    check.that(
        got <= want and got <= available,
        "read {d} of {d}, {d} published",
        .{ got, want, available },
    );
    if (all_or_nothing) check.that(got == if (available >= want) want else 0, "recv {d}", .{got});
    if (!all_or_nothing and want > 0) check.that(got == @min(want, available), "read {d}", .{got});
    check.that(
        same_as_ring(ring, model.cons, buffer[0..got]),
        "read other bytes than the ring's",
        .{},
    );
    model.cons +%= got;
    const own = std.mem.readInt(u32, model.page[constants.offset_left_cons..][0..4], .little);
    check.that(
        got == 0 or own == model.cons,
        "published consumer {d} != {d}",
        .{ own, model.cons },
    );
}

/// `bytes` are the ring's, starting at index `from` (the victim never writes its read ring).
fn same_as_ring(ring: []const u8, from: u32, bytes: []const u8) bool {
    const position = from & (ring.len - 1);
    const first = @min(bytes.len, ring.len - position);
    return std.mem.eql(u8, bytes[0..first], ring[position..][0..first]) and
        std.mem.eql(u8, bytes[first..], ring[0 .. bytes.len - first]);
}

/// The pump's zero-copy path: a window only within what `peek_data_ready` offered.
fn victim_window(model: *Model, want: u16) void {
    const ready = model.victim.peek_data_ready();
    const published = model.published();
    if (published == null or model.violated) {
        check.that(ready == 0, "{d} ready past an impossible index", .{ready});
        if (published == null) {
            _ = model.victim.data_ready(); // lets the victim notice
            model.violated = true;
        }
        return;
    }
    check.that(ready == published.?, "ready {d}, published {d}", .{ ready, published.? });
    const count: u32 = if (ready == 0) 0 else want % (ready + 1);
    var pieces: [2]std.posix.iovec = undefined;
    const window = model.victim.read_window(count, &pieces) orelse return;
    const ring = model.ring();
    var seen: u32 = 0;
    for (window) |piece| {
        // Each piece lies in the ring and continues the stream where the last one stopped.
        const start = @intFromPtr(piece.base) -% @intFromPtr(ring.ptr);
        check.that(
            start < ring.len and piece.len <= ring.len - start,
            "window outside the ring",
            .{},
        );
        check.that(start == (model.cons +% seen) & (ring.len - 1), "window order", .{});
        seen += @intCast(piece.len);
    }
    check.that(seen == count, "window of {d} for {d}", .{ seen, count });
    model.victim.commit_read(count);
    model.cons +%= count;
}

fn victim_write(model: *Model, input: *Input) void {
    const size = model.out_ring_size();
    switch (input.int(u8) % 3) {
        0 => model.poke(constants.offset_right_cons, near(model.prod, input.int(u32), size)),
        1 => model.poke(constants.offset_right_cons, input.int(u32)),
        else => {},
    }
    const cons = model.peer_cons();
    const used = model.prod -% cons;
    const free: ?u32 = if (used > size) null else size - used;
    var source: [4096]u8 = @splat(0x5a);
    const want = @min(input.int(u16) % (size + 9), source.len);
    const wrote = model.victim.write(source[0..want]) catch {
        check.that(free == null or model.violated, "write failed with {?d} free", .{free});
        if (free == null) model.violated = true;
        return;
    };
    if (want == 0) return check.that(wrote == 0, "wrote {d} of nothing", .{wrote});
    check.that(!model.violated, "write succeeded after a violation", .{});
    const room = free orelse {
        check.that(false, "wrote {d} bytes past an impossible consumer {d}", .{ wrote, cons });
        unreachable;
    };
    check.that(wrote == @min(room, want), "wrote {d}, {d} free", .{ wrote, room });
    model.prod +%= wrote;
}

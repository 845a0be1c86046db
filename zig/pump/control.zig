//! A control channel (agent <-> daemon, vchan port 512): whole messages in both directions.
//! Incoming messages are cut from the byte stream and handed to JS one by one; outgoing ones
//! are queued by JS and written whole when the ring has room, because upstream peers read each
//! control message with one all-or-nothing `recv` (qrexec-protocol.md §3.4, §15.3).
//!
//! Limits: an incoming message is at most `protocol.control_body_bytes_max` (longer ones are a
//! protocol error before any of the body is read); outgoing messages wait for ring space up to
//! `outgoing_bytes_max`. A peer that leaves that much unread is not reading its control vchan:
//! the next message is refused and the channel fails as a slow peer, rather than growing.
const std = @import("std");
const linux = std.os.linux;
const assert = std.debug.assert;

const protocol = @import("../protocol.zig");
const Vchan = @import("../vchan/vchan.zig").Vchan;

/// Room for 16 of the largest messages behind a full ring: far more than any working peer lets
/// pile up (a Linux agent's control ring is 4 KiB), little memory per channel.
pub const outgoing_bytes_max: usize = 16 * incoming_bytes_max;
/// The receive buffer never holds more than one whole message.
pub const incoming_bytes_max: usize = protocol.header_bytes + protocol.control_body_bytes_max;

pub const Control = struct {
    vchan: *Vchan,
    allocator: std.mem.Allocator,
    /// Bytes of the message being received: header first, then its body.
    incoming: std.ArrayListUnmanaged(u8) = .{},
    /// Encoded messages waiting for ring space, in order.
    outgoing: std.ArrayListUnmanaged(u8) = .{},
    outgoing_sent: usize = 0,
    /// A message was refused for `outgoing_bytes_max`: the pump fails the channel.
    overflowed: bool = false,

    pub fn deinit(self: *Control) void {
        self.incoming.deinit(self.allocator);
        self.outgoing.deinit(self.allocator);
    }

    pub const Error = error{ TooLarge, Unread, OutOfMemory };

    /// Queues a message. It must fit the peer's ring whole: a message that never could is
    /// refused here, with the size that would fit, rather than failing the channel later. One
    /// that would take the unsent bytes past `outgoing_bytes_max` is refused as `Unread`.
    pub fn queue(self: *Control, msg_type: u32, body: []const u8, ring_bytes: u32) Error!void {
        if (protocol.header_bytes + body.len > ring_bytes) return error.TooLarge;
        const unsent_after = self.unsent_bytes() + protocol.header_bytes + body.len;
        if (self.overflowed or unsent_after > outgoing_bytes_max) {
            self.overflowed = true;
            return error.Unread;
        }
        // Sent bytes are only dropped once all are sent (`flush`): reclaim them now.
        self.compact();
        const header = (protocol.Header{ .type = msg_type, .len = @intCast(body.len) }).encode();
        try self.outgoing.ensureUnusedCapacity(self.allocator, header.len + body.len);
        self.outgoing.appendSliceAssumeCapacity(&header);
        self.outgoing.appendSliceAssumeCapacity(body);
    }

    pub fn has_outgoing(self: *const Control) bool {
        return self.outgoing_sent < self.outgoing.items.len;
    }

    pub fn unsent_bytes(self: *const Control) usize {
        return self.outgoing.items.len - self.outgoing_sent;
    }

    fn compact(self: *Control) void {
        assert(self.outgoing_sent <= self.outgoing.items.len);
        if (self.outgoing_sent == 0) return;
        const unsent = self.unsent_bytes();
        const items = self.outgoing.items;
        std.mem.copyForwards(u8, items[0..unsent], items[self.outgoing_sent..]);
        self.outgoing.shrinkRetainingCapacity(unsent);
        self.outgoing_sent = 0;
    }

    /// Writes as many whole queued messages as the ring takes now.
    pub fn flush(self: *Control) !void {
        while (self.has_outgoing()) {
            const pending = self.outgoing.items[self.outgoing_sent..];
            const header = protocol.Header.decode(pending[0..8].*);
            const size = protocol.header_bytes + header.len;
            // Our own encoding: whole messages, each within the ring it was queued for.
            assert(size <= pending.len);
            // The peer is asked to kick us when it reads (the arming `buffer_space`, which
            // checks again after arming) only when the ring is short: asked every time, it woke
            // our pump for nothing after every control message it read.
            if (self.vchan.peek_buffer_space() < size and self.vchan.buffer_space() < size) return;
            const wrote = try self.vchan.write(pending[0..size]);
            assert(wrote == size);
            self.outgoing_sent += size;
        }
        self.outgoing.clearRetainingCapacity();
        self.outgoing_sent = 0;
    }

    pub const Received = struct { type: u32, body: []const u8 };

    /// The next complete message, or null until one has fully arrived. The body slice is valid
    /// until the next call. A length above `body_bytes_max` is a protocol error.
    pub fn receive(self: *Control, body_bytes_max: u32) !?Received {
        assert(body_bytes_max <= protocol.control_body_bytes_max);
        const allocator = self.allocator;
        if (self.incoming.items.len >= protocol.header_bytes) {
            const header = protocol.Header.decode(self.incoming.items[0..8].*);
            if (self.incoming.items.len == protocol.header_bytes + header.len) {
                self.incoming.clearRetainingCapacity();
            }
        }
        if (self.incoming.items.len < protocol.header_bytes) {
            if (self.vchan.data_ready() < protocol.header_bytes) return null;
            try self.incoming.resize(allocator, protocol.header_bytes);
            _ = try self.vchan.recv(self.incoming.items[0..8]);
        }
        const untrusted = protocol.Header.decode(self.incoming.items[0..8].*);
        if (untrusted.len > body_bytes_max) return error.MessageTooLarge;
        const total = protocol.header_bytes + untrusted.len;
        assert(total <= incoming_bytes_max);
        while (self.incoming.items.len < total) {
            const ready = self.vchan.data_ready();
            if (ready == 0) return null;
            const have = self.incoming.items.len;
            const take = @min(ready, total - have);
            try self.incoming.resize(allocator, have + take);
            const got = try self.vchan.read(self.incoming.items[have..][0..take]);
            assert(got <= take);
            self.incoming.shrinkRetainingCapacity(have + got);
        }
        assert(self.incoming.items.len == total);
        return .{
            .type = untrusted.type,
            .body = self.incoming.items[protocol.header_bytes..total],
        };
    }
};

test "control: unsent messages are bounded and the channel is marked at the limit" {
    var control = Control{ .vchan = undefined, .allocator = std.testing.allocator };
    defer control.deinit();
    const body = [_]u8{0x5a} ** 1000;
    var queued: usize = 0;
    while (true) : (queued += 1) {
        control.queue(0x200, &body, 1 << 20) catch |err| {
            try std.testing.expectEqual(error.Unread, err);
            break;
        };
        try std.testing.expect(control.unsent_bytes() <= outgoing_bytes_max);
    }
    try std.testing.expectEqual(outgoing_bytes_max / (protocol.header_bytes + body.len), queued);
    try std.testing.expect(control.overflowed);
    // Refused from now on, whatever the size: the pump fails the channel.
    try std.testing.expectError(error.Unread, control.queue(0x200, "", 1 << 20));
    try std.testing.expectError(error.TooLarge, control.queue(0x200, &body, 512));
}

//! A control channel (agent <-> daemon, vchan port 512): whole messages in both directions.
//! Incoming messages are cut from the byte stream and handed to JS one by one; outgoing ones
//! are queued by JS and written whole when the ring has room, because upstream peers read each
//! control message with one all-or-nothing `recv` (qrexec-protocol.md §3.4, §15.3).
const std = @import("std");
const linux = std.os.linux;
const assert = std.debug.assert;

const protocol = @import("../protocol.zig");
const Vchan = @import("../vchan/vchan.zig").Vchan;

pub const Control = struct {
    vchan: *Vchan,
    /// Bytes of the message being received: header first, then its body.
    incoming: std.ArrayListUnmanaged(u8) = .{},
    /// Encoded messages waiting for ring space, in order.
    outgoing: std.ArrayListUnmanaged(u8) = .{},
    outgoing_sent: usize = 0,

    pub fn deinit(self: *Control) void {
        self.incoming.deinit(std.heap.c_allocator);
        self.outgoing.deinit(std.heap.c_allocator);
    }

    pub const Error = error{ TooLarge, OutOfMemory };

    /// Queues a message. It must fit the peer's ring whole: a message that never could is
    /// refused here, with the size that would fit, rather than failing the channel later.
    pub fn queue(self: *Control, msg_type: u32, body: []const u8, ring_bytes: u32) Error!void {
        if (protocol.header_bytes + body.len > ring_bytes) return error.TooLarge;
        const header = (protocol.Header{ .type = msg_type, .len = @intCast(body.len) }).encode();
        try self.outgoing.ensureUnusedCapacity(std.heap.c_allocator, header.len + body.len);
        self.outgoing.appendSliceAssumeCapacity(&header);
        self.outgoing.appendSliceAssumeCapacity(body);
    }

    pub fn has_outgoing(self: *const Control) bool {
        return self.outgoing_sent < self.outgoing.items.len;
    }

    /// Writes as many whole queued messages as the ring takes now.
    pub fn flush(self: *Control) !void {
        while (self.has_outgoing()) {
            const pending = self.outgoing.items[self.outgoing_sent..];
            const header = protocol.Header.decode(pending[0..8].*);
            const size = protocol.header_bytes + header.len;
            if (self.vchan.buffer_space() < size) return;
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
        const allocator = std.heap.c_allocator;
        if (self.incoming.items.len >= protocol.header_bytes) {
            const header = protocol.Header.decode(self.incoming.items[0..8].*);
            if (self.incoming.items.len == protocol.header_bytes + header.len) self.incoming.clearRetainingCapacity();
        }
        if (self.incoming.items.len < protocol.header_bytes) {
            if (self.vchan.data_ready() < protocol.header_bytes) return null;
            try self.incoming.resize(allocator, protocol.header_bytes);
            _ = try self.vchan.recv(self.incoming.items[0..8]);
        }
        const untrusted = protocol.Header.decode(self.incoming.items[0..8].*);
        if (untrusted.len > body_bytes_max) return error.MessageTooLarge;
        const total = protocol.header_bytes + untrusted.len;
        while (self.incoming.items.len < total) {
            const ready = self.vchan.data_ready();
            if (ready == 0) return null;
            const have = self.incoming.items.len;
            const take = @min(ready, total - have);
            try self.incoming.resize(allocator, have + take);
            const got = try self.vchan.read(self.incoming.items[have..][0..take]);
            self.incoming.shrinkRetainingCapacity(have + got);
        }
        return .{ .type = untrusted.type, .body = self.incoming.items[protocol.header_bytes..total] };
    }
};

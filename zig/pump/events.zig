//! The pump's reports to JavaScript: records queued in memory, drained by `qp_poll_events`, and a
//! doorbell pipe that JS reads to learn that records are waiting. The doorbell is rung only when
//! the queue goes from empty to non-empty, so a burst of records costs one wakeup.
//!
//! Record layout (little-endian): u32 stream, u32 kind, i32 value, u32 payload_len, payload,
//! padding to a multiple of 4. src/native.ts decodes the same layout.
//!
//! Limits: what a peer can make us queue is bounded. Control messages are the only records a
//! peer can send without end; the pump cuts them only while the queue is below
//! `congested_bytes` (above it they wait in their vchan's ring, and its peer waits for room, as
//! for a reader that is slow). The other records are one per stream or connection state change
//! (connected, done or failed; a front end's request, gone or refused, and its local program's
//! started, failed or exit, each once), so their number is
//! bounded by the streams and connections that can exist at once (a service the pump started
//! adds its `spawned`), and a front end's SIGUSR1s
//! are coalesced into one pending record. Hence at most `congested_bytes` + one message record
//! + those lifecycle records (pump.zig `lifecycle_bytes_max`).
const std = @import("std");
const linux = std.os.linux;
const assert = std.debug.assert;

pub const Kind = enum(u32) {
    /// The HELLO exchange finished; value = negotiated protocol version, payload = when (u64
    /// CLOCK_REALTIME ns, for the timing trace).
    connected = 1,
    /// A control message; value = message type, payload = body.
    message = 2,
    /// The stream finished normally; value = status (see pump.zig for which one).
    done = 3,
    /// The stream failed and is finished; value = -errno, payload = message.
    failed = 4,
    /// Client host (zig/client_host/listener.zig), `stream` = connection id: a front end's
    /// request; payload = its fds 0-2 (i32 each, JS owns them now), u32 argc, u32 envc, strings.
    client_request = 5,
    /// The front end got a SIGUSR1.
    client_signal = 6,
    /// The front end closed its connection or died before its final reply.
    client_gone = 7,
    /// The client host turned a front end away for want of a resource (its fds could not be
    /// received); value = -errno (EMFILE, ENFILE). The front end was told and exits 126.
    client_refused = 8,
    /// A service the pump started itself when its data vchan connected (`qp_attach`'s spawn):
    /// value = its pid (payload: when, as `connected`'s), or -errno when it could not be
    /// started (the stream then sends both EOFs and 127 or 125 itself).
    spawned = 9,
    /// The front end started its call's local program (after `start_local`): value = its pid,
    /// payload = our ends of its stdin and stdout (i32 each, JS owns them now).
    client_local_started = 10,
    /// The front end could not start its local program; value = -errno.
    client_local_failed = 11,
    /// The front end's local program ended; value = its status (0-255).
    client_local_exit = 12,
    /// The front end sent every SIGUSR1 byte it got before this answer to `sync`.
    client_synced = 13,
    /// A stream with `front_end_signals` holds its stdout EOF: JS asks its front end to `sync`
    /// and tells the stream when the front end answered (`qp_front_end_synced`).
    front_end_sync = 14,
};

pub const record_header_bytes: u32 = 16;

/// Above this many queued bytes the pump leaves control messages in their rings until JS drains.
pub const congested_bytes: usize = 1 << 20;

pub const Queue = struct {
    allocator: std.mem.Allocator,
    bytes: std.ArrayListUnmanaged(u8) = .{},
    /// Read end handed to JS; write end rung by the pump.
    doorbell_read: i32 = -1,
    doorbell_write: i32 = -1,
    rung: bool = false,

    pub fn init(allocator: std.mem.Allocator) !Queue {
        var fds: [2]i32 = undefined;
        const rc = linux.pipe2(&fds, .{ .CLOEXEC = true, .NONBLOCK = true });
        if (linux.E.init(rc) != .SUCCESS) return error.SystemResources;
        return .{ .allocator = allocator, .doorbell_read = fds[0], .doorbell_write = fds[1] };
    }

    pub fn deinit(self: *Queue) void {
        self.bytes.deinit(self.allocator);
        _ = linux.close(self.doorbell_read);
        _ = linux.close(self.doorbell_write);
    }

    /// Queues one record. Out of memory drops the payload but keeps the record, so JS still
    /// learns that the stream finished.
    pub fn push(self: *Queue, stream: u32, kind: Kind, value: i32, payload: []const u8) void {
        // The pump checks `congested` before it cuts a message.
        assert(kind != .message or !self.congested());
        // One pending SIGUSR1 record per front end is all JS needs (single-socket mode is
        // entered once), so a front end that signals without end cannot grow the queue.
        if (kind == .client_signal and self.pending(stream, kind)) return;
        // Records are padded to 4 bytes, so each header starts aligned for JS's reads.
        assert(self.bytes.items.len % 4 == 0);
        const padded = std.mem.alignForward(usize, payload.len, 4);
        const kept = if (self.bytes.ensureUnusedCapacity(
            self.allocator,
            record_header_bytes + padded,
        )) payload else |_| payload[0..0];
        self.bytes.ensureUnusedCapacity(self.allocator, record_header_bytes) catch return;
        var header: [record_header_bytes]u8 = undefined;
        std.mem.writeInt(u32, header[0..4], stream, .little);
        std.mem.writeInt(u32, header[4..8], @intFromEnum(kind), .little);
        std.mem.writeInt(i32, header[8..12], value, .little);
        std.mem.writeInt(u32, header[12..16], @intCast(kept.len), .little);
        self.bytes.appendSliceAssumeCapacity(&header);
        self.bytes.appendSliceAssumeCapacity(kept);
        self.bytes.appendNTimesAssumeCapacity(
            0,
            std.mem.alignForward(usize, kept.len, 4) - kept.len,
        );
        if (!self.rung) {
            self.rung = true;
            const one = [_]u8{1};
            _ = linux.write(self.doorbell_write, &one, 1);
        }
    }

    pub fn congested(self: *const Queue) bool {
        return self.bytes.items.len >= congested_bytes;
    }

    /// Whether a record of `kind` for `stream` waits to be drained.
    fn pending(self: *const Queue, stream: u32, kind: Kind) bool {
        var offset: usize = 0;
        while (offset + record_header_bytes <= self.bytes.items.len) {
            const record = self.bytes.items[offset..];
            const len = std.mem.readInt(u32, record[12..16], .little);
            if (std.mem.readInt(u32, record[0..4], .little) == stream and
                std.mem.readInt(u32, record[4..8], .little) == @intFromEnum(kind)) return true;
            offset += record_header_bytes + std.mem.alignForward(usize, len, 4);
        }
        return false;
    }

    /// Moves whole records into `out`; returns the bytes written. A record larger than `out`
    /// stays queued (the caller must offer a bigger buffer; see `pending_record_bytes`).
    pub fn drain(self: *Queue, out: []u8) u32 {
        var offset: usize = 0;
        while (offset + record_header_bytes <= self.bytes.items.len) {
            const len = std.mem.readInt(u32, self.bytes.items[offset + 12 ..][0..4], .little);
            const size = record_header_bytes + std.mem.alignForward(usize, len, 4);
            if (offset + size > out.len) break;
            offset += size;
        }
        @memcpy(out[0..offset], self.bytes.items[0..offset]);
        std.mem.copyForwards(
            u8,
            self.bytes.items[0 .. self.bytes.items.len - offset],
            self.bytes.items[offset..],
        );
        self.bytes.shrinkRetainingCapacity(self.bytes.items.len - offset);
        if (self.bytes.items.len == 0) {
            self.rung = false;
            var sink: [64]u8 = undefined;
            while (true) {
                const rc = linux.read(self.doorbell_read, &sink, sink.len);
                if (linux.E.init(rc) != .SUCCESS or rc == 0) break;
            }
        }
        return @intCast(offset);
    }

    /// Size of the first queued record (0 if none), so JS can grow its buffer.
    pub fn pending_record_bytes(self: *const Queue) u32 {
        if (self.bytes.items.len < record_header_bytes) return 0;
        const len = std.mem.readInt(u32, self.bytes.items[12..16], .little);
        return record_header_bytes + @as(u32, @intCast(std.mem.alignForward(usize, len, 4)));
    }
};

test "events: records round-trip and the doorbell rings once per batch" {
    var queue = try Queue.init(std.testing.allocator);
    defer queue.deinit();
    queue.push(7, .connected, 4, "");
    queue.push(7, .message, 0x200, "hello");
    var byte: [8]u8 = undefined;
    try std.testing.expectEqual(@as(usize, 1), linux.read(queue.doorbell_read, &byte, byte.len));
    var small: [20]u8 = undefined;
    try std.testing.expectEqual(@as(u32, 16), queue.drain(&small));
    try std.testing.expectEqual(@as(u32, 24), queue.pending_record_bytes());
    var out: [64]u8 = undefined;
    try std.testing.expectEqual(@as(u32, 24), queue.drain(&out));
    try std.testing.expectEqual(@as(u32, 0x200), std.mem.readInt(u32, out[8..12], .little));
    try std.testing.expectEqualStrings("hello", out[16..21]);
    try std.testing.expectEqual(@as(u32, 0), queue.pending_record_bytes());
    queue.push(1, .done, 0, "");
    try std.testing.expectEqual(@as(usize, 1), linux.read(queue.doorbell_read, &byte, byte.len));
}

test "events: a front end's signals wait as one record; congestion starts at the limit" {
    var queue = try Queue.init(std.testing.allocator);
    defer queue.deinit();
    queue.push(3, .client_signal, 0, "");
    queue.push(4, .client_signal, 0, "");
    queue.push(3, .client_signal, 0, "");
    var out: [128]u8 = undefined;
    try std.testing.expectEqual(@as(u32, 2 * record_header_bytes), queue.drain(&out));
    // Drained, the next signal is queued again.
    queue.push(3, .client_signal, 0, "");
    try std.testing.expectEqual(@as(u32, record_header_bytes), queue.drain(&out));
    const body = [_]u8{0} ** 4080;
    while (!queue.congested()) queue.push(1, .message, 0x200, &body);
    try std.testing.expectEqual(congested_bytes, queue.bytes.items.len);
    // Lifecycle records still get through: JS must learn that a stream ended.
    queue.push(1, .failed, -1, "gone");
    try std.testing.expect(queue.pending(1, .failed));
}

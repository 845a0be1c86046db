//! A position-derived byte stream for testing either vchan backend: every byte is a function
//! of its position, so a lost, repeated or reordered byte is caught where it happens.
const std = @import("std");
const testing = std.testing;

pub fn pattern_byte(position: u64) u8 {
    return @truncate((position *% 2654435761) >> 7);
}

pub fn fill_pattern(buffer: []u8, start: u64) void {
    for (buffer, 0..) |*b, i| b.* = pattern_byte(start + i);
}

pub fn expect_pattern(buffer: []const u8, start: u64) !void {
    for (buffer, 0..) |b, i| {
        if (b != pattern_byte(start + i)) {
            std.debug.print(
                "byte {d}: got {d}, want {d}\n",
                .{ start + i, b, pattern_byte(start + i) },
            );
            return error.TestUnexpectedResult;
        }
    }
}

/// Pushes `total` bytes of a position-derived stream from `writer` to `reader` in chunks of
/// awkward sizes, single-threaded with non-blocking ends, and checks every byte.
pub fn stream(writer: anytype, reader: anytype, total: u64) !void {
    writer.blocking = false;
    reader.blocking = false;
    var source: [5000]u8 = undefined;
    var target: [3001]u8 = undefined;
    var sent: u64 = 0;
    var received: u64 = 0;
    var round: u32 = 0;
    while (received < total) : (round += 1) {
        try testing.expect(round < 10_000_000);
        // An empty write still flushes what the ring holds, so the tail is not stranded.
        const want: usize = @intCast(@min(total - sent, 1 + (round * 7919) % source.len));
        fill_pattern(source[0..want], sent);
        sent += try writer.write(source[0..want]);
        const read_len = 1 + (round * 104729) % target.len;
        const count = try reader.read(target[0..read_len]);
        try expect_pattern(target[0..count], received);
        received += count;
    }
    try testing.expectEqual(total, sent);
    try testing.expectEqual(@as(u32, 0), reader.data_ready());
}

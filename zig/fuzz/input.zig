//! Reads structured choices out of a fuzzer's raw bytes. Past the end every read yields zero, so
//! any input, however short, is a complete program for a harness.
const std = @import("std");

pub const Input = struct {
    bytes: []const u8,
    pos: usize = 0,

    pub fn init(bytes: []const u8) Input {
        return .{ .bytes = bytes };
    }

    pub fn done(self: *const Input) bool {
        return self.pos >= self.bytes.len;
    }

    pub fn int(self: *Input, comptime T: type) T {
        var raw: [@sizeOf(T)]u8 = @splat(0);
        const count = @min(raw.len, self.bytes.len - @min(self.pos, self.bytes.len));
        @memcpy(raw[0..count], self.bytes[self.pos..][0..count]);
        self.pos += count;
        return std.mem.readInt(T, &raw, .little);
    }

    /// A value in 0..n-1 (n > 0).
    pub fn below(self: *Input, n: u32) u32 {
        std.debug.assert(n > 0);
        return self.int(u32) % n;
    }

    /// Up to `max` bytes, fewer when the input runs out.
    pub fn take(self: *Input, max: usize) []const u8 {
        const start = @min(self.pos, self.bytes.len);
        const count = @min(max, self.bytes.len - start);
        self.pos = start + count;
        return self.bytes[start..][0..count];
    }

    pub fn rest(self: *Input) []const u8 {
        return self.take(self.bytes.len);
    }
};

test "input: reads past the end are zero" {
    var input = Input.init(&.{ 1, 2, 3 });
    try std.testing.expectEqual(@as(u16, 0x0201), input.int(u16));
    try std.testing.expectEqual(@as(u32, 3), input.int(u32));
    try std.testing.expectEqual(@as(u32, 0), input.int(u32));
    try std.testing.expect(input.done());
    try std.testing.expectEqual(@as(usize, 0), input.take(5).len);
}

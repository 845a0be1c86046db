//! Tests of zig/filecopy/wire.zig: header and result layouts against spec §2.9's worked example,
//! and the CRC-32 (check value, chaining, the folding path against the byte-wise reference).
const std = @import("std");
const testing = std.testing;
const wire = @import("wire.zig");

test "crc32: agrees with std's IEEE CRC-32 on a large buffer" {
    var buffer: [1 << 16]u8 = undefined;
    for (&buffer, 0..) |*byte, index| byte.* = @truncate(index *% 31);
    try testing.expectEqual(std.hash.Crc32.hash(&buffer), wire.crc32(0, &buffer));
}

test "crc32: check value and chaining as zlib.crc32" {
    try testing.expectEqual(@as(u32, 0xcbf43926), wire.crc32(0, "123456789"));
    try testing.expectEqual(@as(u32, 0xcbf43926), wire.crc32(wire.crc32(0, "1234"), "56789"));
    try testing.expectEqual(@as(u32, 0), wire.crc32(0, ""));
    try testing.expectEqual(
        @as(u32, 0x414fa339),
        wire.crc32(0, "The quick brown fox jumps over the lazy dog"),
    );
}

test "crc32: every length and alignment agrees with the byte-wise reference" {
    var prng = std.Random.DefaultPrng.init(0x5eed);
    const random = prng.random();
    var data: [4096 + 64]u8 = undefined;
    random.bytes(&data);
    for (0..600) |len| {
        for ([_]usize{ 0, 1, 3, 8 }) |offset| {
            const slice = data[offset..][0..len];
            const seed = random.int(u32);
            try testing.expectEqual(wire.crc32_reference(seed, slice), wire.crc32(seed, slice));
        }
    }
    for (0..200) |_| {
        const len = random.uintLessThan(usize, 4096);
        const offset = random.uintLessThan(usize, 64);
        const slice = data[offset..][0..len];
        // Chained at a random split, as the stream code does across buffers.
        const split = random.uintAtMost(usize, len);
        const chained = wire.crc32(wire.crc32(0, slice[0..split]), slice[split..]);
        try testing.expectEqual(wire.crc32_reference(0, slice), chained);
    }
}

test "crc32: all-zero and all-ones blocks" {
    const zeros = [_]u8{0} ** 1000;
    const ones = [_]u8{0xff} ** 1000;
    try testing.expectEqual(wire.crc32_reference(0, &zeros), wire.crc32(0, &zeros));
    try testing.expectEqual(wire.crc32_reference(0, &ones), wire.crc32(0, &ones));
}

/// The 143-byte stream of spec §2.9.
pub fn worked_example(out: *[143]u8) void {
    var at: usize = 0;
    const dir: wire.FileHeader = .{
        .namelen = 2,
        .mode = 0o40755,
        .filelen = 0,
        .atime = 1700000000,
        .atime_nsec = 0,
        .mtime = 1700000000,
        .mtime_nsec = 0,
    };
    const file: wire.FileHeader = .{
        .namelen = 8,
        .mode = 0o100644,
        .filelen = 3,
        .atime = 1700000000,
        .atime_nsec = 5,
        .mtime = 1700000000,
        .mtime_nsec = 7,
    };
    dir.encode(out[at..][0..32]);
    at += 32;
    @memcpy(out[at..][0..2], "d\x00");
    at += 2;
    file.encode(out[at..][0..32]);
    at += 32;
    @memcpy(out[at..][0..11], "d/a.txt\x00hi\n");
    at += 11;
    dir.encode(out[at..][0..32]);
    at += 32;
    @memcpy(out[at..][0..2], "d\x00");
    at += 2;
    wire.FileHeader.end_marker.encode(out[at..][0..32]);
    at += 32;
    std.debug.assert(at == 143);
}

test "spec §2.9: worked example bytes and CRC" {
    var stream: [143]u8 = undefined;
    worked_example(&stream);
    const expected_first = [_]u8{
        0x02, 0x00, 0x00, 0x00, 0xed, 0x41, 0x00, 0x00, 0,    0,    0,    0,    0, 0, 0, 0,
        0x00, 0xf1, 0x53, 0x65, 0,    0,    0,    0,    0x00, 0xf1, 0x53, 0x65, 0, 0, 0, 0,
    };
    try testing.expectEqualSlices(u8, &expected_first, stream[0..32]);
    try testing.expectEqual(@as(u32, 0x6c088f02), wire.crc32(0, &stream));

    const decoded = wire.FileHeader.decode(stream[34..66]);
    try testing.expectEqual(@as(u32, 8), decoded.namelen);
    try testing.expectEqual(wire.Kind.regular, wire.kind_of(decoded.mode));
    try testing.expectEqual(@as(u64, 3), decoded.filelen);
    try testing.expectEqual(@as(u32, 7), decoded.mtime_nsec);

    var reply: [wire.result_message_bytes_max]u8 = undefined;
    const len = wire.encode_result(&reply, 0, 0x6c088f02, "d");
    try testing.expectEqualSlices(
        u8,
        &[_]u8{ 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x8f, 0x08, 0x6c, 0, 0, 0, 0, 1, 0, 0, 0, 'd' },
        reply[0..len],
    );
    const result = wire.ResultHeader.decode(reply[0..16]);
    try testing.expectEqual(@as(u64, 0x6c088f02), result.crc);
    try testing.expectEqual(@as(u32, 0), result.error_code);
    try testing.expectEqual(@as(u32, 16), wire.encode_result(&reply, 36, 1, null));
}

test "sanitize_for_display replaces controls, non-ASCII and quotes" {
    var text = "a\"b\x1b[1m\xc3\xa9 ~\x7f".*;
    wire.sanitize_for_display(&text);
    try testing.expectEqualStrings("a_b_[1m__ ~_", &text);
}

test "kind_of" {
    try testing.expectEqual(wire.Kind.directory, wire.kind_of(0o40755));
    try testing.expectEqual(wire.Kind.symlink, wire.kind_of(0o120777));
    try testing.expectEqual(wire.Kind.other, wire.kind_of(0o10644)); // fifo
    try testing.expectEqual(wire.Kind.other, wire.kind_of(0o644)); // no type bits
}

//! The qubes.Filecopy stream format (spec filecopy.md §2): the 32-byte `file_header`, the 16-byte
//! `result_header` and its optional extension, the limits the receiver enforces, and the zlib
//! CRC-32 both sides run over every byte of the stream.
//!
//! Pure: no I/O, no allocation. Every integer is little-endian on the wire (§2.1: native order
//! upstream, and every deployed Qubes VM is x86_64), so encode/decode go through explicit
//! `readInt`/`writeInt` instead of `@bitCast`-ing structs.
const std = @import("std");
const builtin = @import("builtin");
const assert = std.debug.assert;

/// `MAX_PATH_LENGTH` of libqubes-rpc-filecopy.h: a name or symlink target may have at most
/// `path_length_max - 1` bytes (including the sender's NUL for names).
pub const path_length_max: u32 = 16384;
pub const name_bytes_max: u32 = path_length_max - 1;
pub const target_bytes_max: u32 = path_length_max - 1;

/// What the receiver reports when the input ends inside an entry ("the sender will explain").
pub const legal_eof: u32 = 31415926;

pub const header_bytes: u32 = 32;
pub const result_bytes: u32 = 16;
pub const result_ext_bytes: u32 = 4;

/// Largest result message: the 16 bytes, the ext length and a name of at most 16383 bytes.
pub const result_message_bytes_max: u32 = result_bytes + result_ext_bytes + name_bytes_max;

/// `struct file_header` (§2.2). `namelen == 0` is the end-of-transfer marker.
pub const FileHeader = struct {
    namelen: u32,
    mode: u32,
    filelen: u64,
    atime: u32,
    atime_nsec: u32,
    mtime: u32,
    mtime_nsec: u32,

    pub const end_marker: FileHeader = .{
        .namelen = 0,
        .mode = 0,
        .filelen = 0,
        .atime = 0,
        .atime_nsec = 0,
        .mtime = 0,
        .mtime_nsec = 0,
    };

    pub fn encode(header: FileHeader, out: *[header_bytes]u8) void {
        std.mem.writeInt(u32, out[0..4], header.namelen, .little);
        std.mem.writeInt(u32, out[4..8], header.mode, .little);
        std.mem.writeInt(u64, out[8..16], header.filelen, .little);
        std.mem.writeInt(u32, out[16..20], header.atime, .little);
        std.mem.writeInt(u32, out[20..24], header.atime_nsec, .little);
        std.mem.writeInt(u32, out[24..28], header.mtime, .little);
        std.mem.writeInt(u32, out[28..32], header.mtime_nsec, .little);
    }

    /// Any 32 bytes decode: the fields are untrusted until the receiver has checked them.
    pub fn decode(bytes: *const [header_bytes]u8) FileHeader {
        return .{
            .namelen = std.mem.readInt(u32, bytes[0..4], .little),
            .mode = std.mem.readInt(u32, bytes[4..8], .little),
            .filelen = std.mem.readInt(u64, bytes[8..16], .little),
            .atime = std.mem.readInt(u32, bytes[16..20], .little),
            .atime_nsec = std.mem.readInt(u32, bytes[20..24], .little),
            .mtime = std.mem.readInt(u32, bytes[24..28], .little),
            .mtime_nsec = std.mem.readInt(u32, bytes[28..32], .little),
        };
    }
};

/// `struct result_header` (§2.4): error code, a zero pad (upstream leaked stack there until
/// 2017) and the CRC in the low 32 bits of a u64. The sender compares the whole u64 with its
/// CRC, as upstream's does (`hdr.crc32 != crc32_sum`): a receiver setting any upper bit is a
/// checksum mismatch.
pub const ResultHeader = struct {
    error_code: u32,
    crc: u64,

    pub fn encode(result: ResultHeader, out: *[result_bytes]u8) void {
        std.mem.writeInt(u32, out[0..4], result.error_code, .little);
        std.mem.writeInt(u32, out[4..8], 0, .little);
        std.mem.writeInt(u64, out[8..16], result.crc, .little);
    }

    /// The pad is ignored, as upstream's sender does.
    pub fn decode(bytes: *const [result_bytes]u8) ResultHeader {
        return .{
            .error_code = std.mem.readInt(u32, bytes[0..4], .little),
            .crc = std.mem.readInt(u64, bytes[8..16], .little),
        };
    }
};

/// Encodes a whole result message into `out`: the 16 bytes plus, when `last_name` is given, the
/// extension (`last_namelen` + name, no NUL). Returns the bytes used.
pub fn encode_result(
    out: *[result_message_bytes_max]u8,
    error_code: u32,
    crc: u32,
    last_name: ?[]const u8,
) u32 {
    (ResultHeader{ .error_code = error_code, .crc = crc }).encode(out[0..result_bytes]);
    const name = last_name orelse return result_bytes;
    assert(name.len <= name_bytes_max);
    std.mem.writeInt(u32, out[result_bytes..][0..4], @intCast(name.len), .little);
    @memcpy(out[result_bytes + result_ext_bytes ..][0..name.len], name);
    return result_bytes + result_ext_bytes + @as(u32, @intCast(name.len));
}

/// The sender's display rule for the receiver's last name (§2.4, `sanitize_remote_filename`):
/// every byte outside 0x20..0x7E and every `"` becomes `_`.
pub fn sanitize_for_display(bytes: []u8) void {
    for (bytes) |*byte| {
        if (byte.* < 0x20 or byte.* > 0x7e or byte.* == '"') byte.* = '_';
    }
}

// ------------------------------------------------------------------------------------ modes

pub const S_IFMT: u32 = 0o170000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFLNK: u32 = 0o120000;
pub const mode_permissions: u32 = 0o7777;

pub const Kind = enum { regular, directory, symlink, other };

pub fn kind_of(mode: u32) Kind {
    return switch (mode & S_IFMT) {
        S_IFREG => .regular,
        S_IFDIR => .directory,
        S_IFLNK => .symlink,
        else => .other,
    };
}

/// Nanoseconds above this are `UTIME_NOW`/`UTIME_OMIT` territory: the receiver refuses them.
pub const nsec_max: u32 = 999_999_999;

// ------------------------------------------------------------------------------------ CRC-32

/// zlib's CRC-32 (reflected 0xEDB88320, init and final xor 0xFFFFFFFF), chained like
/// `zlib.crc32(data, previous)`: `crc32(crc32(0, a), b) == crc32(0, a ++ b)`.
pub fn crc32(previous: u32, bytes: []const u8) u32 {
    var crc = ~previous;
    var rest = bytes;
    if (comptime has_clmul) {
        if (rest.len >= clmul_bytes_min) {
            const whole = rest.len & ~@as(usize, 15);
            crc = crc32_clmul(crc, rest[0..whole]);
            rest = rest[whole..];
        }
    }
    crc = crc32_slice16(crc, rest);
    return ~crc;
}

const polynomial: u32 = 0xedb88320;

/// tables[k][b]: the CRC of byte b followed by k zero bytes (slicing-by-16).
const tables: [16][256]u32 = blk: {
    @setEvalBranchQuota(100_000);
    var result: [16][256]u32 = undefined;
    for (0..256) |b| {
        var crc: u32 = @intCast(b);
        for (0..8) |_| crc = if (crc & 1 != 0) (crc >> 1) ^ polynomial else crc >> 1;
        result[0][b] = crc;
    }
    for (0..256) |b| {
        for (1..16) |k| {
            const previous = result[k - 1][b];
            result[k][b] = (previous >> 8) ^ result[0][previous & 0xff];
        }
    }
    break :blk result;
};

/// Works on the pre-inverted register (no init/final xor).
fn crc32_slice16(register: u32, bytes: []const u8) u32 {
    var crc = register;
    var i: usize = 0;
    while (i + 16 <= bytes.len) : (i += 16) {
        const a = std.mem.readInt(u32, bytes[i..][0..4], .little) ^ crc;
        const b = std.mem.readInt(u32, bytes[i + 4 ..][0..4], .little);
        const c = std.mem.readInt(u32, bytes[i + 8 ..][0..4], .little);
        const d = std.mem.readInt(u32, bytes[i + 12 ..][0..4], .little);
        crc = tables[15][a & 0xff] ^ tables[14][(a >> 8) & 0xff] ^
            tables[13][(a >> 16) & 0xff] ^ tables[12][a >> 24] ^
            tables[11][b & 0xff] ^ tables[10][(b >> 8) & 0xff] ^
            tables[9][(b >> 16) & 0xff] ^ tables[8][b >> 24] ^
            tables[7][c & 0xff] ^ tables[6][(c >> 8) & 0xff] ^
            tables[5][(c >> 16) & 0xff] ^ tables[4][c >> 24] ^
            tables[3][d & 0xff] ^ tables[2][(d >> 8) & 0xff] ^
            tables[1][(d >> 16) & 0xff] ^ tables[0][d >> 24];
    }
    while (i < bytes.len) : (i += 1) {
        crc = (crc >> 8) ^ tables[0][(crc ^ bytes[i]) & 0xff];
    }
    return crc;
}

/// The byte-at-a-time reference (upstream's crc32.c), for tests.
pub fn crc32_reference(previous: u32, bytes: []const u8) u32 {
    var crc = ~previous;
    for (bytes) |byte| crc = (crc >> 8) ^ tables[0][(crc ^ byte) & 0xff];
    return ~crc;
}

const has_clmul = builtin.cpu.arch == .x86_64 and
    std.Target.x86.featureSetHas(builtin.cpu.features, .pclmul) and
    std.Target.x86.featureSetHas(builtin.cpu.features, .sse4_1);

/// Folding needs one 64-byte block to start with.
const clmul_bytes_min: usize = 64;

const V = @Vector(2, u64);

/// Where the compiler emits VEX-encoded vector code, ours must be VEX too: a legacy-SSE
/// instruction while the upper halves of the vector registers are dirty costs a state transition
/// on Intel. A harness that dirties them before each call measured this CRC at 66 MB/s with the
/// legacy form and 9,700 with the VEX one (AVX-512 Xeon); AMD has no such cost.
const has_avx = builtin.cpu.arch == .x86_64 and
    std.Target.x86.featureSetHas(builtin.cpu.features, .avx);

/// `_mm_clmulepi64_si128(a, b, imm)`: bit 0 of imm picks a's quadword, bit 4 b's.
inline fn clmul(a: V, b: V, comptime imm: u8) V {
    const imm_text = std.fmt.comptimePrint("{d}", .{imm});
    if (comptime has_avx) {
        return asm ("vpclmulqdq $" ++ imm_text ++ ", %[b], %[a], %[out]"
            : [out] "=x" (-> V),
            : [a] "x" (a),
              [b] "x" (b),
        );
    }
    return asm ("pclmulqdq $" ++ imm_text ++ ", %[b], %[a]"
        : [a] "=x" (-> V),
        : [a_in] "0" (a),
          [b] "x" (b),
    );
}

inline fn load(bytes: []const u8) V {
    return .{
        std.mem.readInt(u64, bytes[0..8], .little),
        std.mem.readInt(u64, bytes[8..16], .little),
    };
}

/// PCLMULQDQ folding (Intel's "Fast CRC Computation for Generic Polynomials Using PCLMULQDQ",
/// with the reflected constants zlib/Chromium's crc32_simd.c use for 0xEDB88320). Takes and
/// returns the pre-inverted register; `bytes.len` is a multiple of 16, at least 64.
fn crc32_clmul(register: u32, bytes: []const u8) u32 {
    assert(bytes.len >= clmul_bytes_min);
    assert(bytes.len % 16 == 0);
    const k1k2: V = .{ 0x0154442bd4, 0x01c6e41596 };
    const k3k4: V = .{ 0x01751997d0, 0x00ccaa009e };
    const k5k0: V = .{ 0x0163cd6124, 0x0000000000 };
    const poly: V = .{ 0x01db710641, 0x01f7011641 };
    const mask32: V = .{ 0xffffffff, 0xffffffff };

    var x1 = load(bytes[0..16]) ^ V{ register, 0 };
    var x2 = load(bytes[16..32]);
    var x3 = load(bytes[32..48]);
    var x4 = load(bytes[48..64]);
    var i: usize = 64;
    while (i + 64 <= bytes.len) : (i += 64) {
        const x5 = clmul(x1, k1k2, 0x00);
        const x6 = clmul(x2, k1k2, 0x00);
        const x7 = clmul(x3, k1k2, 0x00);
        const x8 = clmul(x4, k1k2, 0x00);
        x1 = clmul(x1, k1k2, 0x11) ^ x5 ^ load(bytes[i..][0..16]);
        x2 = clmul(x2, k1k2, 0x11) ^ x6 ^ load(bytes[i + 16 ..][0..16]);
        x3 = clmul(x3, k1k2, 0x11) ^ x7 ^ load(bytes[i + 32 ..][0..16]);
        x4 = clmul(x4, k1k2, 0x11) ^ x8 ^ load(bytes[i + 48 ..][0..16]);
    }
    // Fold the four lanes into one.
    x1 = clmul(x1, k3k4, 0x11) ^ x2 ^ clmul(x1, k3k4, 0x00);
    x1 = clmul(x1, k3k4, 0x11) ^ x3 ^ clmul(x1, k3k4, 0x00);
    x1 = clmul(x1, k3k4, 0x11) ^ x4 ^ clmul(x1, k3k4, 0x00);
    while (i + 16 <= bytes.len) : (i += 16) {
        x1 = clmul(x1, k3k4, 0x11) ^ load(bytes[i..][0..16]) ^ clmul(x1, k3k4, 0x00);
    }
    assert(i == bytes.len);
    // 128 -> 64 bits.
    const low = clmul(x1, k3k4, 0x10);
    x1 = V{ x1[1], 0 } ^ low;
    // 64 -> 32 bits (mask32 keeps the low dword of each quadword, as _mm_setr_epi32(~0,0,~0,0)).
    const shifted = shift_right_4(x1);
    x1 = clmul(x1 & mask32, k5k0, 0x00) ^ shifted;
    // Barrett reduction.
    var x2b = clmul(x1 & mask32, poly, 0x10);
    x2b = clmul(x2b & mask32, poly, 0x00);
    x1 ^= x2b;
    return @truncate(x1[0] >> 32);
}

/// `_mm_srli_si128(x, 4)`: the 128-bit value shifted right by 32 bits.
inline fn shift_right_4(x: V) V {
    return .{ (x[0] >> 32) | (x[1] << 32), x[1] >> 32 };
}

comptime {
    assert(header_bytes == 32 and result_bytes == 16);
    assert(name_bytes_max == 16383);
    assert(legal_eof == 31415926);
}

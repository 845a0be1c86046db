//! qrexec wire constants and the message header (qrexec-protocol.md §3-4). Pure, no I/O.
//! src/protocol/constants.ts holds the same values; zig/abi.zig hands these to src/abi.generated.ts
//! and test/protocol/constants.test.ts compares the two.
const std = @import("std");

pub const version_min: u32 = 2;
pub const version_max: u32 = 4;
pub const client_protocol_version: u32 = 3;
/// A service killed by signal N exits with this plus N (§8).
pub const exit_signal_base: u32 = 128;
/// The status of a call whose service's status was lost (upstream's -1, §8).
pub const exit_no_status: u32 = 255;

pub const max_data_chunk_v2: u32 = 4096;
pub const max_data_chunk_v3: u32 = 65536;

pub const MsgType = enum(u32) {
    data_stdin = 0x190,
    data_stdout = 0x191,
    data_stderr = 0x192,
    data_exit_code = 0x193,
    exec_cmdline = 0x200,
    just_exec = 0x201,
    service_connect = 0x202,
    service_refused = 0x203,
    trigger_service = 0x210,
    connection_terminated = 0x211,
    trigger_service3 = 0x212,
    trigger_service4 = 0x213,
    hello = 0x300,
    _,
};

pub const Header = extern struct {
    type: u32,
    len: u32,

    pub fn encode(self: Header) [8]u8 {
        var bytes: [8]u8 = undefined;
        std.mem.writeInt(u32, bytes[0..4], self.type, .little);
        std.mem.writeInt(u32, bytes[4..8], self.len, .little);
        return bytes;
    }

    pub fn decode(bytes: [8]u8) Header {
        return .{
            .type = std.mem.readInt(u32, bytes[0..4], .little),
            .len = std.mem.readInt(u32, bytes[4..8], .little),
        };
    }
};

pub const header_bytes: u32 = @sizeOf(Header);
pub const hello_bytes: u32 = header_bytes + 4;
pub const exit_code_bytes: u32 = header_bytes + 4;

/// What a peer's HELLO (§4.1), 12 untrusted bytes, says.
pub const Hello = union(enum) {
    /// A version we can speak (at least `version_min`; a higher one is negotiated down).
    version: u32,
    /// Not a HELLO: the header that came instead.
    not_hello: Header,
    /// A HELLO of a version below `version_min`.
    too_old: u32,
};

pub fn decode_hello(raw: [hello_bytes]u8) Hello {
    const header = Header.decode(raw[0..header_bytes].*);
    const hello = header.type == @intFromEnum(MsgType.hello) and header.len == 4;
    if (!hello) return .{ .not_hello = header };
    const untrusted_version = std.mem.readInt(u32, raw[header_bytes..hello_bytes], .little);
    if (untrusted_version < version_min) return .{ .too_old = untrusted_version };
    return .{ .version = untrusted_version };
}

pub fn encode_hello(version: u32) [hello_bytes]u8 {
    var message: [hello_bytes]u8 = undefined;
    message[0..header_bytes].* = (Header{ .type = @intFromEnum(MsgType.hello), .len = 4 }).encode();
    std.mem.writeInt(u32, message[header_bytes..hello_bytes], version, .little);
    return message;
}

/// Largest control message body we accept from a peer (trigger fixed part + service name).
pub const control_body_bytes_max: u32 = 160 + 65000;

pub fn max_data_chunk(version: u32) u32 {
    std.debug.assert(version >= version_min);
    return if (version <= 2) max_data_chunk_v2 else max_data_chunk_v3;
}

comptime {
    std.debug.assert(@sizeOf(Header) == 8);
    std.debug.assert(max_data_chunk_v3 + header_bytes <= 1 << 20);
}

//! Harness `hello`: a peer's HELLO (zig/protocol.zig `decode_hello`), the first 12 bytes every
//! control and data vchan peer sends, read by the pump's `step_hello`. Against the spec's
//! literal rule (§4.1: type 0x300, length 4, a version of at least 2): a message is a version
//! exactly when it keeps that rule, a refusal names what came, and our own HELLO of every
//! version we speak reads back as that version.
const std = @import("std");
const protocol = @import("../protocol.zig");
const check = @import("check.zig");

pub fn run(bytes: []const u8) void {
    var raw: [protocol.hello_bytes]u8 = @splat(0);
    const count = @min(raw.len, bytes.len);
    @memcpy(raw[0..count], bytes[0..count]);
    const kind = std.mem.readInt(u32, raw[0..4], .little);
    const len = std.mem.readInt(u32, raw[4..8], .little);
    const value = std.mem.readInt(u32, raw[8..12], .little);
    const hello = kind == 0x300 and len == 4;
    switch (protocol.decode_hello(raw)) {
        .version => |version| check.that(
            hello and value >= 2 and version == value,
            "accepted version {d} of type 0x{x} length {d}",
            .{ version, kind, len },
        ),
        .not_hello => |header| check.that(
            !hello and header.type == kind and header.len == len,
            "refused type 0x{x} length {d} as not a HELLO (header said 0x{x}, {d})",
            .{ kind, len, header.type, header.len },
        ),
        .too_old => |version| check.that(
            hello and value < 2 and version == value,
            "refused version {d} as too old",
            .{version},
        ),
    }
    const span = protocol.version_max - protocol.version_min + 1;
    const own = protocol.version_min + value % span;
    const decoded = protocol.decode_hello(protocol.encode_hello(own));
    const same = switch (decoded) {
        .version => |version| version == own,
        else => false,
    };
    check.that(same, "our HELLO of version {d} does not read back", .{own});
}

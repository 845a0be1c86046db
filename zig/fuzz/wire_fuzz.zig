//! Harness `wire`: the file-copy wire format (zig/filecopy/wire.zig). Any 32 bytes decode and
//! re-encode to themselves; a result message decodes back to what was encoded; the fast CRC-32
//! equals the bitwise reference on any split of any bytes; display sanitising leaves only
//! printable bytes and keeps those that were.
const std = @import("std");
const wire = @import("../filecopy/wire.zig");
const Input = @import("input.zig").Input;
const check = @import("check.zig");

pub fn run(bytes: []const u8) void {
    var input = Input.init(bytes);
    var raw: [wire.header_bytes]u8 = @splat(0);
    @memcpy(raw[0..@min(raw.len, bytes.len)], bytes[0..@min(raw.len, bytes.len)]);
    var again: [wire.header_bytes]u8 = undefined;
    wire.FileHeader.decode(&raw).encode(&again);
    check.that(std.mem.eql(u8, &raw, &again), "file header does not re-encode", .{});

    const code = input.int(u32);
    const crc = input.int(u32);
    const has_name = input.int(u8) & 1 == 1;
    const split = input.int(u16);
    const rest = input.rest();
    check_result(code, crc, if (has_name) rest[0..@min(rest.len, wire.name_bytes_max)] else null);
    check_crc(crc, rest, @min(split, rest.len));
    check_sanitize(rest);
}

fn check_result(code: u32, crc: u32, name: ?[]const u8) void {
    var message: [wire.result_message_bytes_max]u8 = undefined;
    const len = wire.encode_result(&message, code, crc, name);
    const header = wire.ResultHeader.decode(message[0..wire.result_bytes]);
    check.that(header.error_code == code and header.crc == crc, "result header round trip", .{});
    if (name) |n| {
        check.that(len == wire.result_bytes + 4 + n.len, "result length {d}", .{len});
        const ext = std.mem.readInt(u32, message[wire.result_bytes..][0..4], .little);
        check.that(ext == n.len, "result ext length {d} != {d}", .{ ext, n.len });
        check.that(std.mem.eql(u8, message[wire.result_bytes + 4 ..][0..n.len], n), "name", .{});
    } else {
        check.that(len == wire.result_bytes, "result without name is {d} bytes", .{len});
    }
}

fn check_crc(seed: u32, bytes: []const u8, split: usize) void {
    const whole = wire.crc32(seed, bytes);
    check.that(whole == wire.crc32_reference(seed, bytes), "crc32 differs from reference", .{});
    const parts = wire.crc32(wire.crc32(seed, bytes[0..split]), bytes[split..]);
    check.that(whole == parts, "crc32 depends on the split at {d}", .{split});
}

fn check_sanitize(bytes: []const u8) void {
    var copy: [256]u8 = undefined;
    const n = @min(copy.len, bytes.len);
    @memcpy(copy[0..n], bytes[0..n]);
    wire.sanitize_for_display(copy[0..n]);
    for (copy[0..n], bytes[0..n]) |after, before| {
        check.that(after >= 0x20 and after <= 0x7e and after != '"', "unsafe byte {d}", .{after});
        const kept = before >= 0x20 and before <= 0x7e and before != '"';
        check.that(!kept or after == before, "printable byte {d} changed", .{before});
    }
}

//! Harness `host`: what a local process sends the agent's client-host socket
//! (zig/client_host/listener.zig: `judge_header`, `payload_valid`, `next_record`). In Qubes the
//! agent runs as root and the socket is every user's, so these bytes cross a privilege boundary.
//! Against a plain reading of zig/client_host/wire.zig: a header is read on only when every
//! limit holds; a payload is valid exactly when it is argc + envc NUL-terminated strings; a run
//! of front end records is taken only in its turn (`synced`, the answer to `sync`, while the
//! program runs or after), each record whole, with its value in range, and never past the bytes
//! there are.
const std = @import("std");
const wire = @import("../client_host/wire.zig");
const listener = @import("../client_host/listener.zig");
const Input = @import("input.zig").Input;
const check = @import("check.zig");

pub fn run(bytes: []const u8) void {
    var input = Input.init(bytes);
    const choice = input.int(u8);
    const header = wire.RequestHeader{
        .magic = if (choice & 1 == 0) wire.magic else input.int(u32),
        .version = if (choice & 2 == 0) wire.version else input.int(u32),
        .argc = input.int(u8),
        .envc = input.int(u8),
        .payload_bytes = if (choice & 4 == 0) input.int(u16) else input.int(u32),
    };
    const fds = if (choice & 8 == 0) wire.passed_fds else input.below(8);
    check_header(header, fds);
    const payload = input.take(input.int(u16));
    check_payload(header, payload);
    const state = input.below(4);
    check_records(@enumFromInt(state), input.int(u8) & 1 == 1, input.rest());
}

fn check_header(header: wire.RequestHeader, fds: u32) void {
    const verdict = listener.judge_header(header, fds);
    const strings = @as(u64, header.argc) + header.envc;
    const sound = header.magic == wire.magic and header.version == wire.version and
        fds == wire.passed_fds and header.payload_bytes <= wire.payload_bytes_max and
        strings <= header.payload_bytes;
    const other_build = header.magic == wire.magic and header.version != wire.version;
    const expected: listener.HeaderVerdict =
        if (sound) .read_payload else if (other_build) .fallback else .reject;
    check.that(verdict == expected, "header {any} with {d} fds: {s}, expected {s}", .{
        header, fds, @tagName(verdict), @tagName(expected),
    });
}

fn check_payload(template: wire.RequestHeader, payload: []const u8) void {
    var header = template;
    header.payload_bytes = @intCast(payload.len);
    var nuls: u64 = 0;
    for (payload) |byte| nuls += @intFromBool(byte == 0);
    const ends = payload.len == 0 or payload[payload.len - 1] == 0;
    const expected = ends and nuls == @as(u64, header.argc) + header.envc;
    check.that(listener.payload_valid(header, payload) == expected, "payload {any}, {d}+{d}", .{
        payload, header.argc, header.envc,
    });
}

/// Takes records from `bytes` as the listener does, a state machine kept beside it.
fn check_records(start: listener.LocalState, with_fds: bool, bytes: []const u8) void {
    var state = start;
    var rest = bytes;
    while (rest.len > 0) {
        const verdict = listener.next_record(rest, state, with_fds);
        switch (verdict) {
            .hostile => return,
            .incomplete => {
                const short = rest.len < wire.local_record_bytes_max;
                check.that(short, "incomplete with {d} bytes", .{rest.len});
                check.that(rest[0] != wire.signal_byte, "a signal byte left incomplete", .{});
                return;
            },
            .record => |taken| {
                check.that(taken.len > 0 and taken.len <= rest.len, "took {d} of {d}", .{
                    taken.len, rest.len,
                });
                state = next_state(state, taken.record, with_fds, rest[0..taken.len]);
                rest = rest[taken.len..];
            },
        }
    }
}

fn next_state(
    state: listener.LocalState,
    record: listener.Record,
    with_fds: bool,
    raw: []const u8,
) listener.LocalState {
    const value = if (raw.len == wire.local_record_bytes_max)
        std.mem.readInt(i32, raw[1..5], .little)
    else
        0;
    switch (record) {
        .signal => {
            check.that(raw.len == 1 and raw[0] == wire.signal_byte, "signal {any}", .{raw});
            return state;
        },
        .synced => {
            const turn = state == .started or state == .ended;
            check.that(turn and raw[0] == 'Y' and value == 0, "synced out of turn", .{});
            return state;
        },
        .started => |pid| {
            check.that(state == .asked and with_fds and raw[0] == 'S', "started out of turn", .{});
            check.that(pid >= 1 and pid == value, "started pid {d}", .{pid});
            return .started;
        },
        .failed => |errno| {
            check.that(state == .asked and raw[0] == 'F', "failed out of turn", .{});
            check.that(errno >= 1 and errno <= 4095 and errno == value, "errno {d}", .{errno});
            return .ended;
        },
        .exited => |status| {
            check.that(state == .started and raw[0] == 'X', "exited out of turn", .{});
            check.that(status >= 0 and status <= 255 and status == value, "status {d}", .{status});
            return .ended;
        },
    }
}

//! Harness `data`: the pump's data-channel frame handling (zig/pump/data.zig) on the caller's
//! side, fed a hostile service's byte stream through a real vchan in arbitrary pieces, with real
//! pipes as the local output and stderr. Properties, against a plain reading of the stream:
//! output gets exactly the DATA_STDOUT/STDIN payloads up to their EOF, stderr a prefix of the
//! DATA_STDERR payloads; an oversized chunk or a foreign type fails the call with EPROTO, never
//! earlier; the call ends with the exit code sent, only once output's EOF and the code came.
const std = @import("std");
const linux = std.os.linux;
const protocol = @import("../protocol.zig");
const data_mod = @import("../pump/data.zig");
const pair_mod = @import("pair.zig");
const Input = @import("input.zig").Input;
const check = @import("check.zig");

var shared: ?pair_mod.Pair = null;
var backlog: [protocol.max_data_chunk_v3]u8 = undefined;
var scratch: [protocol.max_data_chunk_v3]u8 = undefined;

const Collected = struct {
    out: std.ArrayListUnmanaged(u8) = .{},
    err: std.ArrayListUnmanaged(u8) = .{},

    fn deinit(self: *Collected) void {
        self.out.deinit(std.heap.c_allocator);
        self.err.deinit(std.heap.c_allocator);
    }
};

pub fn run(bytes: []const u8) void {
    const pair = shared orelse blk: {
        shared = pair_mod.connect(1024, 2048);
        break :blk shared.?;
    };
    pair_mod.reset(pair, 0);
    var input = Input.init(bytes);
    const version: u32 = if (input.int(u8) & 1 == 0) 2 else 3;
    const cuts = input.int(u32);
    const stream = input.rest();

    const out = make_pipe();
    const err = make_pipe();
    defer _ = linux.close(out[0]);
    defer _ = linux.close(err[0]);
    var data = data_mod.Data.init(pair.server, false, .{}, &backlog, &scratch);
    data.start(version);
    data.set_fds(out[1], -1, -1, false);
    data.remote_stderr_fd = err[1];
    defer data.close_all(); // whatever is still open (the write ends)
    var got = Collected{};
    defer got.deinit();
    feed(pair, &data, stream, cuts, out[0], err[0], &got);
    expect_reference(&data, stream, protocol.max_data_chunk(version), &got);
}

fn make_pipe() [2]i32 {
    var fds: [2]i32 = undefined;
    const rc = linux.pipe2(&fds, .{ .CLOEXEC = true, .NONBLOCK = true });
    check.that(linux.E.init(rc) == .SUCCESS, "pipe2 failed", .{});
    return fds;
}

/// Writes the stream in pieces and steps the receiver until it makes no more progress.
fn feed(
    pair: pair_mod.Pair,
    data: *data_mod.Data,
    stream: []const u8,
    cuts: u32,
    out: i32,
    err: i32,
    got: *Collected,
) void {
    var sent: usize = 0;
    var round: u5 = 0;
    while (data.outcome() == null) : (round +%= 1) {
        const piece = 1 + ((cuts >> round) & 0x3ff);
        sent += pair.client.write(stream[sent..@min(stream.len, sent + piece)]) catch |e| {
            std.debug.panic("fuzz: honest write failed: {s}", .{@errorName(e)});
        };
        var idle: u32 = 0;
        while (idle < 3 and data.outcome() == null) {
            const before = pair.server.peek_data_ready();
            data.step(0, 0, 0);
            const drained = drain(out, &got.out) + drain(err, &got.err);
            idle = if (drained == 0 and pair.server.peek_data_ready() == before) idle + 1 else 0;
        }
        if (sent == stream.len) break;
    }
    _ = drain(out, &got.out);
    _ = drain(err, &got.err);
}

fn drain(fd: i32, into: *std.ArrayListUnmanaged(u8)) usize {
    var total: usize = 0;
    var buffer: [16384]u8 = undefined;
    while (true) {
        const rc = linux.read(fd, &buffer, buffer.len);
        if (linux.E.init(rc) != .SUCCESS or rc == 0) return total;
        into.appendSlice(std.heap.c_allocator, buffer[0..rc]) catch @panic("out of memory");
        total += rc;
    }
}

/// What the stream says, read frame by frame: `out` and `err` as delivered up to the first bad
/// frame (or the end), where the output's EOF and the exit code came, and where it went bad.
const Reference = struct {
    out: std.ArrayListUnmanaged(u8) = .{},
    err: std.ArrayListUnmanaged(u8) = .{},
    /// Output and stderr as they were once both EOF and exit code had come.
    out_at_finish: ?usize = null,
    err_at_finish: usize = 0,
    status: ?i32 = null,
    /// The status at the finish, then every later one: the receiver may take in a few more
    /// frames in the step that finishes, so its status is one of these.
    statuses: std.ArrayListUnmanaged(i32) = .{},
    bad: bool = false,
    bad_after_finish: bool = false,

    fn read(stream: []const u8, max_chunk: u32) Reference {
        var r = Reference{};
        var at: usize = 0;
        var out_closed = false;
        while (stream.len - at >= protocol.header_bytes and !r.bad) {
            const header = protocol.Header.decode(stream[at..][0..8].*);
            at += protocol.header_bytes;
            const known = header.type >= 0x190 and header.type <= 0x193;
            if (header.len > max_chunk or !known) {
                r.bad = true;
                r.bad_after_finish = r.out_at_finish != null;
                break;
            }
            const body = stream[at..@min(stream.len, at + header.len)];
            at += body.len;
            switch (header.type) {
                0x190, 0x191 => if (header.len == 0) {
                    out_closed = true;
                } else if (!out_closed) append(&r.out, body),
                0x192 => append(&r.err, body),
                else => if (body.len == header.len) {
                    const short = body.len < 4;
                    r.status = if (short) 255 else std.mem.readInt(i32, body[0..4], .little);
                    if (r.out_at_finish != null) append_status(&r.statuses, r.status.?);
                },
            }
            if (r.out_at_finish == null and out_closed and r.status != null) {
                r.out_at_finish = r.out.items.len;
                r.err_at_finish = r.err.items.len;
                append_status(&r.statuses, r.status.?);
            }
        }
        return r;
    }

    fn deinit(self: *Reference) void {
        self.out.deinit(std.heap.c_allocator);
        self.err.deinit(std.heap.c_allocator);
        self.statuses.deinit(std.heap.c_allocator);
    }
};

fn append_status(list: *std.ArrayListUnmanaged(i32), status: i32) void {
    list.append(std.heap.c_allocator, status) catch @panic("out of memory");
}

fn append(list: *std.ArrayListUnmanaged(u8), bytes: []const u8) void {
    list.appendSlice(std.heap.c_allocator, bytes) catch @panic("out of memory");
}

fn expect_reference(
    data: *const data_mod.Data,
    stream: []const u8,
    max_chunk: u32,
    got: *const Collected,
) void {
    var ref = Reference.read(stream, max_chunk);
    defer ref.deinit();
    const outcome = data.outcome();
    // Output stops at its EOF, so it is the reference's whatever the ending.
    check.that(
        std.mem.eql(u8, got.out.items, ref.out.items),
        "output: {d} bytes, reference {d}",
        .{ got.out.items.len, ref.out.items.len },
    );
    check.that(
        std.mem.startsWith(u8, ref.err.items, got.err.items),
        "stderr is not a prefix of the reference",
        .{},
    );
    if (outcome) |o| switch (o) {
        .done => |status| {
            check.that(ref.out_at_finish != null, "done before output EOF and exit code", .{});
            const known = std.mem.indexOfScalar(i32, ref.statuses.items, status) != null;
            check.that(known, "exit status {d}, reference {any}", .{ status, ref.statuses.items });
            check.that(got.err.items.len >= ref.err_at_finish, "stderr cut before the end", .{});
        },
        .failed => |failure| {
            check.that(ref.bad, "failed ({s}) on a valid stream", .{failure.message});
            check.that(failure.errno == .PROTO, "failed with {s}", .{@tagName(failure.errno)});
            check.that(got.err.items.len == ref.err.items.len, "stderr before the bad frame", .{});
        },
    } else {
        check.that(!ref.bad and ref.out_at_finish == null, "the call went on past its end", .{});
        check.that(got.err.items.len == ref.err.items.len, "stderr lost", .{});
    }
    if (ref.bad and !ref.bad_after_finish) check.that(
        outcome != null and outcome.? == .failed,
        "bad frame accepted",
        .{},
    );
}

//! A real shm vchan pair inside the fuzzing process: both ends connected through the real
//! rendezvous socket and memfd, made once per process (a pair per input would cost more than
//! the input itself) and put back to a clean state by each harness before every input.
const std = @import("std");
const linux = std.os.linux;
const vchan_mod = @import("../vchan/vchan.zig");
const constants = @import("../constants.zig");

pub const Vchan = vchan_mod.Vchan;

pub const Pair = struct {
    server: *Vchan,
    client: *Vchan,
};

var counter: u32 = 0;

/// Connects a pair whose server reads `read_min` and writes `write_min` bytes (its rings as
/// libxenvchan would size them). Any failure here is the machine's, not the input's: panic.
pub fn connect(read_min: u32, write_min: u32) Pair {
    return connect_or_error(read_min, write_min) catch |err| {
        std.debug.panic("fuzz set-up: cannot connect a vchan pair: {s}", .{@errorName(err)});
    };
}

fn connect_or_error(read_min: u32, write_min: u32) !Pair {
    counter += 1;
    var dir_buffer: [64]u8 = undefined;
    const pid = linux.getpid();
    const dir = try std.fmt.bufPrint(&dir_buffer, "/tmp/qrx-fuzz-{d}-{d}", .{ pid, counter });
    try std.fs.makeDirAbsolute(dir);
    // The directory only hosts the rendezvous socket, gone once the client came.
    defer std.fs.deleteTreeAbsolute(dir) catch {};
    const allocator = std.heap.c_allocator;
    const server = try allocator.create(Vchan);
    const client = try allocator.create(Vchan);
    try server.server_init(
        .shm,
        .{
            .dir = dir,
            .local_domain = 0,
            .remote_domain = 9,
            .port = 600,
            .read_min = read_min,
            .write_min = write_min,
            .spin_ns = 0,
        },
    );
    try client.client_init(
        .shm,
        .{ .dir = dir, .local_domain = 9, .remote_domain = 0, .port = 600, .spin_ns = 0 },
    );
    var attempts: u32 = 0;
    while (try client.finish() != 0) : (attempts += 1) {
        if (attempts > 1000) return error.Timeout;
        try server.wait_event(10);
    }
    try server.wait_event(0);
    if (server.state() != .connected or client.state() != .connected) return error.NotConnected;
    server.set_blocking(false);
    client.set_blocking(false);
    return .{ .server = server, .client = client };
}

/// Undoes whatever the last input did to the pair: both ends connected, no violation seen,
/// every index at `start` (so wrap-around of the u32 indices is reached from any input).
pub fn reset(pair: Pair, start: u32) void {
    inline for (.{ pair.server, pair.client }) |end| {
        end.shm.peer_gone = false;
        end.shm.cause = .{};
        end.shm.debug_set_indices(start);
    }
    const page = pair.server.shm.map.?;
    page[constants.offset_cli_live] = constants.live_connected;
    page[constants.offset_srv_live] = constants.live_connected;
}

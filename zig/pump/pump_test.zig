//! The pump end to end inside one process: both ends of a call attached to one pump, real
//! vchans, real socketpairs and pipes standing in for the service and the caller's terminal.
//! Every test runs once per vchan backend (`each_backend`).
const std = @import("std");
const linux = std.os.linux;
const testing = std.testing;

const pump_mod = @import("pump.zig");
const Pump = pump_mod.Pump;
const events = pump_mod.events;
const vchan_mod = @import("../vchan/vchan.zig");
const Backend = vchan_mod.Backend;
const protocol = @import("../protocol.zig");
const diag = @import("../diag.zig");

const Event = struct { stream: u32, kind: events.Kind, value: i32, payload: []const u8 };

/// Runs `body(backend)` for every backend, naming the backend that failed.
fn each_backend(comptime body: fn (Backend) anyerror!void) !void {
    for (std.enums.values(Backend)) |backend| {
        body(backend) catch |err| {
            std.debug.print("pump test failed on the {s} backend\n", .{@tagName(backend)});
            return err;
        };
    }
}

const Harness = struct {
    pump: *Pump,
    backend: Backend,
    tmp: testing.TmpDir,
    dir_buffer: [std.fs.max_path_bytes]u8 = undefined,
    dir: []const u8 = "",
    buffer: [1 << 17]u8 = undefined,
    collected: std.ArrayListUnmanaged(Event) = .{},
    arena: std.heap.ArenaAllocator,

    fn init(backend: Backend) !*Harness {
        const harness = try testing.allocator.create(Harness);
        harness.* = .{
            .pump = try testing.allocator.create(Pump),
            .backend = backend,
            .tmp = testing.tmpDir(.{}),
            .arena = std.heap.ArenaAllocator.init(testing.allocator),
        };
        harness.pump.* = .{ .allocator = testing.allocator };
        harness.dir = try harness.tmp.dir.realpath(".", &harness.dir_buffer);
        try harness.pump.start();
        return harness;
    }

    fn deinit(self: *Harness) void {
        self.pump.stop();
        self.arena.deinit();
        self.tmp.cleanup();
        testing.allocator.destroy(self.pump);
        testing.allocator.destroy(self);
    }

    /// The client asks for the same ring sizes: shm ignores that (the server decides), a socket
    /// client sizes its local rings by it, so a "small ring" test is small on both backends.
    fn vchan(self: *Harness, server: bool, port: i32, ring_bytes: u32) !*vchan_mod.Vchan {
        const v = try testing.allocator.create(vchan_mod.Vchan);
        errdefer testing.allocator.destroy(v);
        if (server) {
            try v.server_init(
                self.backend,
                .{
                    .dir = self.dir,
                    .local_domain = 3,
                    .remote_domain = 4,
                    .port = port,
                    .read_min = ring_bytes,
                    .write_min = ring_bytes,
                    .spin_ns = 0,
                },
            );
        } else {
            try v.client_init(
                self.backend,
                .{
                    .dir = self.dir,
                    .local_domain = 4,
                    .remote_domain = 3,
                    .port = port,
                    .read_min = ring_bytes,
                    .write_min = ring_bytes,
                    .spin_ns = 0,
                },
            );
        }
        return v;
    }

    /// Collects events until `count` of `kind` arrived (or fails after 5 s).
    fn wait_for(self: *Harness, kind: events.Kind, count: usize) !void {
        return self.wait_until(kind, count, 5000);
    }

    fn wait_until(self: *Harness, kind: events.Kind, count: usize, timeout_ms: i64) !void {
        const deadline = std.time.milliTimestamp() + timeout_ms;
        while (self.count_of(kind) < count) {
            if (std.time.milliTimestamp() > deadline) return error.Timeout;
            var poll_fd = [_]linux.pollfd{
                .{ .fd = self.pump.queue.doorbell_read, .events = linux.POLL.IN, .revents = 0 },
            };
            _ = linux.poll(&poll_fd, 1, 50);
            const got = self.pump.drain_events(&self.buffer);
            var offset: usize = 0;
            while (offset < got) {
                const len = std.mem.readInt(u32, self.buffer[offset + 12 ..][0..4], .little);
                try self.collected.append(self.arena.allocator(), .{
                    .stream = std.mem.readInt(u32, self.buffer[offset..][0..4], .little),
                    .kind = @enumFromInt(
                        std.mem.readInt(u32, self.buffer[offset + 4 ..][0..4], .little),
                    ),
                    .value = std.mem.readInt(i32, self.buffer[offset + 8 ..][0..4], .little),
                    .payload = try self.arena.allocator().dupe(
                        u8,
                        self.buffer[offset + 16 ..][0..len],
                    ),
                });
                offset += 16 + std.mem.alignForward(usize, len, 4);
            }
        }
    }

    /// What the stream's vchan holds that its socket has not taken yet (0 once it is closed).
    fn service_unsent(self: *Harness, stream: u32) u32 {
        self.pump.mutex.lock();
        defer self.pump.mutex.unlock();
        const found = self.pump.streams.get(stream) orelse return 0;
        return if (found.vchan_closed) 0 else found.vchan.unsent_bytes();
    }

    /// Until `stream` is done or failed.
    fn wait_until_either(self: *Harness, stream: u32) !void {
        var rounds: u32 = 0;
        while (self.find(stream, .done) == null and self.find(stream, .failed) == null) {
            if (rounds == 100) return error.Timeout;
            rounds += 1;
            // Only to collect what came within 50 ms: the loop looks for either kind itself.
            self.wait_until(.done, std.math.maxInt(usize), 50) catch {};
        }
    }

    fn count_of(self: *Harness, kind: events.Kind) usize {
        var count: usize = 0;
        for (self.collected.items) |event| count += @intFromBool(event.kind == kind);
        return count;
    }

    fn find(self: *Harness, stream: u32, kind: events.Kind) ?Event {
        for (self.collected.items) |event| {
            if (event.stream == stream and event.kind == kind) return event;
        }
        return null;
    }
};

fn pipe() ![2]i32 {
    var fds: [2]i32 = undefined;
    if (linux.E.init(linux.pipe2(&fds, .{ .CLOEXEC = true })) != .SUCCESS) return error.Pipe;
    return fds;
}

fn write_all(fd: i32, bytes: []const u8) void {
    var offset: usize = 0;
    while (offset < bytes.len) offset += linux.write(fd, bytes[offset..].ptr, bytes.len - offset);
}

fn read_to_end(fd: i32, out: []u8) !usize {
    var total: usize = 0;
    while (true) {
        const rc = linux.read(fd, out[total..].ptr, out.len - total);
        if (linux.E.init(rc) != .SUCCESS) return error.Read;
        if (rc == 0) return total;
        total += rc;
    }
}

/// A caller (client side, vchan server) and a service (vchan client) attached to one pump.
const Call = struct { client: u32, service: u32, child: [3]i32, caller_out: i32, caller_in: i32 };

fn start_call(harness: *Harness, port: i32, ring_bytes: u32) !Call {
    return start_call_with(harness, port, ring_bytes, false);
}

/// `start_call`, the caller having a local program (whose status JS brings) when `local`.
fn start_call_with(harness: *Harness, port: i32, ring_bytes: u32, local: bool) !Call {
    const pump = harness.pump;
    const client = try pump.attach(
        try harness.vchan(true, port, ring_bytes),
        .{ .kind = .data_client, .own_version = 4, .send_first = true, .connect_timeout_ms = 5000 },
    );
    const service = try pump.attach(
        try harness.vchan(false, port, ring_bytes),
        .{
            .kind = .data_service,
            .own_version = 4,
            .send_first = true,
            .connect_timeout_ms = 5000,
        },
    );
    const output = try pipe();
    const input = try pipe();
    try pump.with_stream(client, Pump.set_stdio, .{ output[1], input[0], -1, local });
    const child = try pump.with_stream(service, Pump.make_service_stdio, .{ true, false });
    return .{
        .client = client,
        .service = service,
        .child = child,
        .caller_out = output[0],
        .caller_in = input[1],
    };
}

test "pump: test.Add — stdin to the service, stdout back, exit status last" {
    try each_backend(test_add);
}

fn test_add(backend: Backend) !void {
    const harness = try Harness.init(backend);
    defer harness.deinit();
    const call = try start_call(harness, 600, 65536);
    try harness.wait_for(.connected, 2);
    try testing.expectEqual(@as(i32, 4), harness.find(call.client, .connected).?.value);

    write_all(call.caller_in, "11 22\n");
    _ = linux.close(call.caller_in);
    // The "service": reads its stdin to EOF, answers, exits 0.
    var request: [64]u8 = undefined;
    const got = try read_to_end(call.child[0], &request);
    try testing.expectEqualStrings("11 22\n", request[0..got]);
    write_all(call.child[1], "33\n");
    for (call.child) |fd| _ = linux.close(fd);
    try harness.pump.with_stream(call.service, Pump.local_exit, .{0});

    try harness.wait_for(.done, 2);
    try testing.expectEqual(@as(i32, 0), harness.find(call.service, .done).?.value);
    try testing.expectEqual(@as(i32, 0), harness.find(call.client, .done).?.value);
    const client_done = harness.find(call.client, .done).?;
    try expect_marks(client_done.payload, harness.find(call.service, .done).?.payload);
    var answer: [64]u8 = undefined;
    const answered = try read_to_end(call.caller_out, &answer);
    try testing.expectEqualStrings("33\n", answer[0..answered]);
    try harness.pump.close(call.client);
    try harness.pump.close(call.service);
}

/// The DONE records' stage times (the trace's): each side's own, each after its cause.
fn expect_marks(client_payload: []const u8, service_payload: []const u8) !void {
    const Mark = @import("data.zig").Mark;
    const count = @import("data.zig").mark_count;
    try testing.expectEqual(@as(usize, count * 8), client_payload.len);
    try testing.expectEqual(@as(usize, count * 8), service_payload.len);
    const at = struct {
        fn at(payload: []const u8, mark: Mark) u64 {
            const offset = @as(usize, @intFromEnum(mark)) * 8;
            return std.mem.readInt(u64, payload[offset..][0..8], .little);
        }
    }.at;
    try testing.expectEqual(@as(u64, 0), at(client_payload, .exit_sent));
    try testing.expectEqual(@as(u64, 0), at(service_payload, .exit_received));
    const pairs = [_][2]u64{
        .{ at(client_payload, .first_byte_sent), at(service_payload, .first_byte_received) },
        .{ at(client_payload, .eof_sent), at(service_payload, .eof_received) },
        .{ at(service_payload, .first_byte_sent), at(client_payload, .first_byte_received) },
        .{ at(service_payload, .eof_sent), at(client_payload, .eof_received) },
        .{ at(service_payload, .exit_sent), at(client_payload, .exit_received) },
    };
    for (pairs) |pair| {
        try testing.expect(pair[0] != 0);
        try testing.expect(pair[0] <= pair[1]);
    }
}

test "pump: a large transfer through a small ring, and the remote exit status reaches the caller" {
    try each_backend(large_transfer);
}

fn large_transfer(backend: Backend) !void {
    const harness = try Harness.init(backend);
    defer harness.deinit();
    const call = try start_call(harness, 601, 1024);
    try harness.wait_for(.connected, 2);
    _ = linux.close(call.caller_in);
    // The service writes 3 MiB and exits 42; the caller's output must get every byte in order.
    const total = 3 * 1024 * 1024;
    const writer = try std.Thread.spawn(.{}, write_pattern, .{ call.child[1], total });
    _ = linux.close(call.child[0]);
    _ = linux.close(call.child[2]);
    try testing.expectEqual(@as(usize, total), try read_pattern(call.caller_out));
    writer.join();
    try harness.pump.with_stream(call.service, Pump.local_exit, .{42});
    try harness.wait_for(.done, 2);
    try testing.expectEqual(@as(i32, 42), harness.find(call.client, .done).?.value);
}

/// What `reply_hook` was called with (the pump thread calls it).
var replied = std.atomic.Value(u64).init(0);

fn record_reply(connection: u32, status: i32) void {
    const status_bits: u64 = @as(u32, @bitCast(status));
    replied.store(@as(u64, connection) << 32 | status_bits, .seq_cst);
}

/// A pump whose front end answers go to `record_reply`.
fn recording_harness() !*Harness {
    const harness = try Harness.init(.shm);
    harness.pump.mutex.lock();
    harness.pump.reply_hook = record_reply;
    harness.pump.mutex.unlock();
    replied.store(0, .seq_cst);
    return harness;
}

test "pump: a hosted call's front end hears the status from the pump thread, and only then" {
    const harness = try recording_harness();
    defer harness.deinit();
    const call = try start_call(harness, 630, 65536);
    try harness.pump.with_stream(call.client, Pump.reply_when_done, .{0x1234});
    // A service stream never answers a front end.
    try harness.pump.with_stream(call.service, Pump.reply_when_done, .{0x5678});
    _ = linux.close(call.caller_in);
    for (call.child) |fd| _ = linux.close(fd);
    try harness.pump.with_stream(call.service, Pump.local_exit, .{300});
    try harness.wait_for(.done, 2);
    var waited_ms: u32 = 0;
    while (replied.load(.seq_cst) == 0 and waited_ms < 2000) : (waited_ms += 1) {
        std.time.sleep(std.time.ns_per_ms);
    }
    // 300's low 8 bits, as the caller's exit status (§8).
    try testing.expectEqual(@as(u64, 0x1234) << 32 | 44, replied.load(.seq_cst));
    // A caller whose service side vanished without a status: JS words that one.
    replied.store(0, .seq_cst);
    const lost = try start_call(harness, 631, 65536);
    try harness.pump.with_stream(lost.client, Pump.reply_when_done, .{0x4321});
    try harness.wait_for(.connected, 4);
    try expect_unanswered_once_service_gone(harness, lost);
}

/// The call's service side closes; its caller's front end is not answered by the pump.
fn expect_unanswered_once_service_gone(harness: *Harness, call: Call) !void {
    try harness.pump.close(call.service);
    try harness.wait_until_either(call.client);
    std.time.sleep(50 * std.time.ns_per_ms);
    try testing.expectEqual(@as(u64, 0), replied.load(.seq_cst));
}

test "pump: a front end is not answered while its local program's status is unknown" {
    const harness = try recording_harness();
    defer harness.deinit();
    // The caller has a local program, whose status is to come from JS.
    const call = try start_call_with(harness, 640, 65536, true);
    try harness.pump.with_stream(call.client, Pump.reply_when_done, .{0x2222});
    try harness.wait_for(.connected, 2);
    // The service ends and its side leaves before the caller's program does.
    for (call.child) |fd| _ = linux.close(fd);
    try harness.pump.with_stream(call.service, Pump.local_exit, .{0});
    try harness.wait_for(.done, 1);
    try expect_unanswered_once_service_gone(harness, call);
    _ = linux.close(call.caller_in);
    try harness.pump.close(call.client);
}

test "pump: a caller's exit status is the remote's if not 0, else its program's" {
    try testing.expectEqual(@as(i32, 7), pump_mod.client_exit_status(7, 3));
    try testing.expectEqual(@as(i32, 3), pump_mod.client_exit_status(0, 3));
    try testing.expectEqual(@as(i32, 0), pump_mod.client_exit_status(0, null));
    try testing.expectEqual(@as(i32, 251), pump_mod.client_exit_status(-5, null));
    try testing.expectEqual(@as(i32, 44), pump_mod.client_exit_status(0, 300));
}

test "pump: a service's exit status comes from its pidfd, without JS telling it" {
    try each_backend(exit_from_pidfd);
}

fn exit_from_pidfd(backend: Backend) !void {
    const harness = try Harness.init(backend);
    defer harness.deinit();
    // One child exits 5, the other is killed by SIGKILL (128 + 9, as JS's waitStatus says).
    const cases = [_]struct { port: i32, kill: bool, expected: i32 }{
        .{ .port = 610, .kill = false, .expected = 5 },
        .{ .port = 611, .kill = true, .expected = 137 },
    };
    for (cases, 1..) |case, done_count| {
        const call = try start_call(harness, case.port, 65536);
        _ = linux.close(call.caller_in);
        const forked = linux.fork();
        if (forked == 0) {
            if (case.kill) _ = linux.kill(linux.getpid(), linux.SIG.KILL);
            linux.exit_group(5);
        }
        const pid: i32 = @intCast(forked);
        try harness.pump.set_child(call.service, pid);
        for (call.child) |fd| _ = linux.close(fd);
        try harness.wait_for(.done, 2 * done_count);
        try testing.expectEqual(case.expected, harness.find(call.client, .done).?.value);
        // Read without reaping: the child is still ours (Bun's) to wait for.
        var status: u32 = 0;
        try testing.expectEqual(@as(usize, @intCast(pid)), linux.waitpid(pid, &status, 0));
    }
}

test "pump: a service the pump starts itself: at connect, a missing one, an orphan" {
    try each_backend(pump_spawns);
}

/// A spawn's strings: argv, then the environment.
const sh_strings = "/bin/sh\x00-c\x00";
const spawn_env = "PATH=/usr/bin:/bin\x00";

const service_attach: pump_mod.AttachOptions = .{
    .kind = .data_service,
    .own_version = 4,
    .send_first = true,
    .connect_timeout_ms = 5000,
};
const client_attach: pump_mod.AttachOptions = .{
    .kind = .data_client,
    .own_version = 4,
    .send_first = true,
    .connect_timeout_ms = 5000,
};

fn pump_spawns(backend: Backend) !void {
    const harness = try Harness.init(backend);
    defer harness.deinit();
    try spawned_at_connect(harness);
    try spawn_of_missing_program(harness);
    try spawn_refused_on_a_client(harness);
    try spawned_orphan(harness);
    try spawned_reaped_elsewhere(harness);
}

/// The service attached with its spawn: started when the caller connects; its output and
/// status arrive.
fn spawned_at_connect(harness: *Harness) !void {
    const pump = harness.pump;
    const echo = sh_strings ++ "cat; exit 5\x00" ++ spawn_env;
    const options = with_spawn(echo, 3);
    const service = try pump.attach(try harness.vchan(false, 620, 65536), options);
    const client = try pump.attach(try harness.vchan(true, 620, 65536), client_attach);
    const output = try pipe();
    const input = try pipe();
    try pump.with_stream(client, Pump.set_stdio, .{ output[1], input[0], -1, false });
    write_all(input[1], "hello\n");
    _ = linux.close(input[1]);
    try harness.wait_for(.done, 2);
    const pid = harness.find(service, .spawned).?.value;
    try testing.expect(pid > 0);
    try testing.expectEqual(@as(i32, 5), harness.find(client, .done).?.value);
    var answer: [16]u8 = undefined;
    try testing.expectEqualStrings("hello\n", answer[0..try read_to_end(output[0], &answer)]);
    // Reaped by the pump: not even a zombie is left.
    try expect_gone(pid);
}

fn with_spawn(strings: []const u8, argc: u32) pump_mod.AttachOptions {
    var options = service_attach;
    options.spawn = .{
        .strings = strings,
        .argc = argc,
        .with_stderr = true,
        .stdout_pipe = false,
    };
    return options;
}

/// Only a service stream starts a service: a caller's spawn is refused, its vchan closed.
fn spawn_refused_on_a_client(harness: *Harness) !void {
    var options = with_spawn(sh_strings ++ "exit 0\x00" ++ spawn_env, 3);
    options.kind = .data_client;
    try testing.expectError(
        error.Fail,
        harness.pump.attach(try harness.vchan(true, 625, 65536), options),
    );
    try testing.expectEqual(@as(i32, @intFromEnum(linux.E.INVAL)), diag.errno());
}

/// A program that is not there: both EOFs and 127, as upstream's exec failure (§5.5).
fn spawn_of_missing_program(harness: *Harness) !void {
    const nothing = "/nonexistent/program\x00" ++ spawn_env;
    const missing = try connected_pair(harness, 622, 4, with_spawn(nothing, 1));
    try harness.wait_for(.done, 4);
    const refused = -@as(i32, @intFromEnum(linux.E.NOENT));
    try testing.expectEqual(refused, harness.find(missing.service, .spawned).?.value);
    try testing.expectEqual(@as(i32, 127), harness.find(missing.client, .done).?.value);
}

/// A service that outlives its closed stream is still reaped when it ends.
fn spawned_orphan(harness: *Harness) !void {
    const sleeper = sh_strings ++ "exec sleep 0.2\x00" ++ spawn_env;
    const orphan = try connected_pair(harness, 623, 6, with_spawn(sleeper, 3));
    try harness.wait_for(.spawned, 3);
    const pid = harness.find(orphan.service, .spawned).?.value;
    try harness.pump.close(orphan.service);
    try harness.pump.close(orphan.client);
    try expect_gone(pid);
}

/// Our service reaped by someone else before the pump could (its status is lost): the call
/// still ends, with 255, rather than waiting for a status nobody will bring.
fn spawned_reaped_elsewhere(harness: *Harness) !void {
    const exit_0 = sh_strings ++ "sleep 0.3; exit 0\x00" ++ spawn_env;
    const pair = try connected_pair(harness, 624, 8, with_spawn(exit_0, 3));
    // Held from microseconds after the spawn until the child has ended (0.3 s later), so the
    // pump cannot reap it first.
    harness.pump.mutex.lock();
    const pid = harness.pump.streams.get(pair.service).?.child_pid;
    var status: u32 = 0;
    const reaped = linux.waitpid(pid, &status, 0);
    harness.pump.mutex.unlock();
    try testing.expectEqual(@as(usize, @intCast(pid)), reaped);
    while (harness.find(pair.client, .done) == null) {
        try harness.wait_for(.done, harness.count_of(.done) + 1);
    }
    try testing.expectEqual(@as(i32, 255), harness.find(pair.client, .done).?.value);
}

const Pair = struct { client: u32, service: u32 };

/// A caller and a service stream attached with `service_options`, connected
/// (`connected_events` counted so far with these): the caller's stdin is empty and closed,
/// its output discarded.
fn connected_pair(
    harness: *Harness,
    port: i32,
    connected_events: usize,
    service_options: pump_mod.AttachOptions,
) !Pair {
    const pump = harness.pump;
    const client = try pump.attach(try harness.vchan(true, port, 65536), client_attach);
    const service = try pump.attach(try harness.vchan(false, port, 65536), service_options);
    const output = try pipe();
    const input = try pipe();
    _ = linux.close(output[0]);
    _ = linux.close(input[1]);
    try pump.with_stream(client, Pump.set_stdio, .{ output[1], input[0], -1, false });
    try harness.wait_for(.connected, connected_events);
    return .{ .client = client, .service = service };
}

/// Waits up to 2 s for `pid` to be gone from /proc (a zombie is still there).
fn expect_gone(pid: i32) !void {
    var path: [32]u8 = undefined;
    const proc = try std.fmt.bufPrintZ(&path, "/proc/{d}", .{pid});
    var waited: u32 = 0;
    while (waited < 200) : (waited += 1) {
        if (linux.E.init(linux.access(proc, linux.F_OK)) == .NOENT) return;
        std.time.sleep(10 * std.time.ns_per_ms);
    }
    return error.ChildNotReaped;
}

test "pump: socket: a done service flushes the bytes the kernel still refuses, then reports" {
    const harness = try Harness.init(.socket);
    defer harness.deinit();
    const call = try start_call(harness, 603, 4096);
    try harness.wait_for(.connected, 2);
    _ = linux.close(call.caller_in);
    _ = linux.close(call.child[0]);
    _ = linux.close(call.child[2]);
    // Nobody reads the caller's output, so the caller (a stream of this same pump) stalls, the
    // socket between the two fills, and the service's bytes start to stay in its local ring.
    // Feed the service until they do, in pieces small enough to leave room for the ending.
    var piece: [1000]u8 = undefined;
    var sent: usize = 0;
    while (harness.service_unsent(call.service) == 0) {
        if (sent > 16 << 20) return error.SocketNeverFilled;
        for (&piece, 0..) |*b, i| b.* = @truncate((sent + i) *% 31);
        write_all(call.child[1], &piece);
        sent += piece.len;
        try settle(call.child[1]);
    }
    const unsent = harness.service_unsent(call.service);
    try testing.expect(unsent < 4096 - 2 * protocol.header_bytes - protocol.exit_code_bytes);
    _ = linux.close(call.child[1]);
    try harness.pump.with_stream(call.service, Pump.local_exit, .{5});
    // The service is done, but its EOFs and exit code are not with the kernel yet: it must not
    // close (which would block this pump thread and drop them), nor report done.
    try testing.expectError(error.Timeout, harness.wait_until(.done, 1, 200));
    try testing.expect(harness.service_unsent(call.service) > unsent);
    try testing.expectEqual(@as(usize, sent), try read_pattern(call.caller_out));
    try harness.wait_for(.done, 2);
    try testing.expectEqual(@as(i32, 5), harness.find(call.service, .done).?.value);
    try testing.expectEqual(@as(i32, 5), harness.find(call.client, .done).?.value);
}

/// Waits until the pump has read everything written to the socket `fd`, and a little more.
fn settle(fd: i32) !void {
    var waited: u32 = 0;
    while (true) : (waited += 1) {
        if (waited > 2000) return error.NotConsumed;
        var queued: i32 = 0;
        if (linux.E.init(
            linux.ioctl(fd, linux.SIOCOUTQ, @intFromPtr(&queued)),
        ) != .SUCCESS) return error.Ioctl;
        if (queued == 0) break;
        std.time.sleep(std.time.ns_per_ms);
    }
    std.time.sleep(2 * std.time.ns_per_ms);
}

fn write_pattern(fd: i32, total: usize) void {
    var block: [4096]u8 = undefined;
    var sent: usize = 0;
    while (sent < total) : (sent += block.len) {
        for (&block, 0..) |*b, i| b.* = @truncate((sent + i) *% 31);
        write_all(fd, &block);
    }
    _ = linux.close(fd);
}

/// Reads `fd` to its end, checking every byte against `write_pattern`; returns the count.
fn read_pattern(fd: i32) !usize {
    var received: usize = 0;
    var chunk: [8192]u8 = undefined;
    while (true) {
        const rc = linux.read(fd, &chunk, chunk.len);
        if (linux.E.init(rc) != .SUCCESS) return error.Read;
        if (rc == 0) return received;
        for (chunk[0..rc], 0..) |b, i| try testing.expectEqual(
            @as(u8, @truncate((received + i) *% 31)),
            b,
        );
        received += rc;
    }
}

test "pump: a service that cannot start sends both EOFs and its exit code" {
    try each_backend(service_cannot_start);
}

fn service_cannot_start(backend: Backend) !void {
    const harness = try Harness.init(backend);
    defer harness.deinit();
    const call = try start_call(harness, 602, 65536);
    try harness.wait_for(.connected, 2);
    for (call.child) |fd| _ = linux.close(fd);
    _ = linux.close(call.caller_in);
    try harness.pump.with_stream(call.service, Pump.finish_with, .{ 127, true });
    try harness.wait_for(.done, 2);
    try testing.expectEqual(@as(i32, 127), harness.find(call.client, .done).?.value);
}

test "pump: control channels negotiate the lower version and carry whole messages" {
    try each_backend(control_channels);
}

fn control_channels(backend: Backend) !void {
    const harness = try Harness.init(backend);
    defer harness.deinit();
    const pump = harness.pump;
    const agent = try pump.attach(
        try harness.vchan(true, 512, 4096),
        .{ .kind = .control, .own_version = 4, .send_first = true, .connect_timeout_ms = 5000 },
    );
    const daemon = try pump.attach(
        try harness.vchan(false, 512, 4096),
        .{ .kind = .control, .own_version = 3, .send_first = false, .connect_timeout_ms = 5000 },
    );
    try harness.wait_for(.connected, 2);
    try testing.expectEqual(@as(i32, 3), harness.find(agent, .connected).?.value);
    try testing.expectEqual(@as(i32, 3), harness.find(daemon, .connected).?.value);

    try pump.send(
        daemon,
        @intFromEnum(protocol.MsgType.exec_cmdline),
        "\x04\x00\x00\x00\x01\x02\x00\x00user:QUBESRPC test.Add+ work\x00",
    );
    try harness.wait_for(.message, 1);
    const message = harness.find(agent, .message).?;
    try testing.expectEqual(@as(i32, 0x200), message.value);
    try testing.expectStringEndsWith(message.payload, "test.Add+ work\x00");
    // A message that can never fit the peer's ring is refused up front.
    var huge: [5000]u8 = undefined;
    try testing.expectError(
        error.Fail,
        pump.send(daemon, 0x200, &huge),
    );
    // The agent leaving is reported to the daemon as a failure of the channel.
    try pump.close(agent);
    try harness.wait_for(.failed, 1);
    try testing.expectEqual(
        -@as(i32, @intFromEnum(linux.E.PIPE)),
        harness.find(daemon, .failed).?.value,
    );
}

test "pump: a vchan whose peer never comes times out" {
    try each_backend(peer_never_comes);
}

fn peer_never_comes(backend: Backend) !void {
    const harness = try Harness.init(backend);
    defer harness.deinit();
    const lonely = try harness.pump.attach(
        try harness.vchan(true, 700, 1024),
        .{ .kind = .data_client, .own_version = 4, .send_first = true, .connect_timeout_ms = 100 },
    );
    try harness.wait_for(.failed, 1);
    const event = harness.find(lonely, .failed).?;
    try testing.expectEqual(-@as(i32, @intFromEnum(linux.E.TIMEDOUT)), event.value);
}

test "pump: a waiting shm server's HELLO is in its ring before any client comes" {
    const harness = try Harness.init(.shm);
    defer harness.deinit();
    const server = try harness.vchan(true, 710, 65536);
    const empty = server.peek_buffer_space();
    const stream = try harness.pump.attach(
        server,
        .{ .kind = .data_client, .own_version = 4, .send_first = true, .connect_timeout_ms = 5000 },
    );
    // The pump steps a new stream at once; nobody connects, so only an early HELLO can fill it.
    var space = empty;
    var waited_ms: u32 = 0;
    while (space == empty and waited_ms < 2000) : (waited_ms += 1) {
        std.time.sleep(std.time.ns_per_ms);
        space = try harness.pump.with_stream(stream, ring_space, .{});
    }
    try testing.expectEqual(empty - protocol.hello_bytes, space);
}

test "pump: a service side that connected, said everything and left before the server looked" {
    const harness = try Harness.init(.shm);
    defer harness.deinit();
    const server = try harness.vchan(true, 720, 4096);
    const empty = server.peek_buffer_space();
    const options: pump_mod.AttachOptions = .{
        .kind = .data_client,
        .own_version = 4,
        .send_first = true,
        .connect_timeout_ms = 5000,
    };
    const stream = try harness.pump.attach(server, options);
    const output = try pipe();
    // Our stdin stays open: nothing is to be sent to the peer that left.
    const input = try pipe();
    defer _ = linux.close(input[1]);
    try harness.pump.with_stream(stream, Pump.set_stdio, .{ output[1], input[0], -1, false });
    var space = empty;
    while (space == empty) space = try harness.pump.with_stream(stream, ring_space, .{});
    // The pump's early HELLO is out. With the pump held, this thread plays the server's side
    // of the rendezvous, and the service side its whole call, then goes.
    {
        harness.pump.mutex.lock();
        defer harness.pump.mutex.unlock();
        const peer = try harness.vchan(false, 720, 4096);
        defer close_peer(peer);
        var rounds: u32 = 0;
        while (try peer.finish() != 0 and rounds < 1000) : (rounds += 1) try server.wait_event(10);
        for ([_][]const u8{
            &framed(.hello, &.{ 4, 0, 0, 0 }),
            &framed(.data_stdout, "out"),
            &framed(.data_stdout, ""),
            &framed(.data_exit_code, &.{ 7, 0, 0, 0 }),
        }) |bytes| _ = try peer.send(bytes);
    }
    try harness.wait_for(.done, 1);
    try testing.expectEqual(@as(i32, 7), harness.find(stream, .done).?.value);
    var got: [16]u8 = undefined;
    try testing.expectEqualStrings("out", got[0..try read_to_end(output[0], &got)]);
    try harness.pump.close(stream);
}

/// A qrexec message: header and body.
fn framed(comptime kind: protocol.MsgType, comptime body: []const u8) [8 + body.len]u8 {
    const header = protocol.Header{ .type = @intFromEnum(kind), .len = body.len };
    return header.encode() ++ body[0..body.len].*;
}

const StreamPointer = @typeInfo(@TypeOf(Pump.set_stdio)).@"fn".params[0].type.?;

fn ring_space(stream: StreamPointer) diag.Fail!u32 {
    return stream.vchan.peek_buffer_space();
}

/// A control peer outside the pump (it reads and writes only when the test says), connected
/// to a pump control stream that sent its HELLO first; the peer's HELLO answers it.
fn raw_control_peer(harness: *Harness, port: i32) !struct { stream: u32, peer: *vchan_mod.Vchan } {
    const options: pump_mod.AttachOptions = .{
        .kind = .control,
        .own_version = 4,
        .send_first = true,
        .connect_timeout_ms = 5000,
    };
    const stream = try harness.pump.attach(try harness.vchan(true, port, 4096), options);
    const peer = try harness.vchan(false, port, 4096);
    try peer.connect_wait(5000);
    peer.set_blocking(true);
    var hello: [protocol.hello_bytes]u8 = undefined;
    const header = protocol.Header{ .type = @intFromEnum(protocol.MsgType.hello), .len = 4 };
    hello[0..8].* = header.encode();
    std.mem.writeInt(u32, hello[8..12], 4, .little);
    _ = try peer.send(&hello);
    try harness.wait_for(.connected, 1);
    return .{ .stream = stream, .peer = peer };
}

fn close_peer(peer: *vchan_mod.Vchan) void {
    peer.close();
    testing.allocator.destroy(peer);
}

test "pump: a control peer that never reads: sends refused at the limit, fails as a slow peer" {
    // shm only: a socket stream that ends with bytes unsent reports after the flush timeout
    // every finishing socket stream gets (pump.zig `finish`), 10 s.
    control_peer_never_reads(.shm) catch |err| {
        std.debug.print("pump test failed on the shm backend\n", .{});
        return err;
    };
}

fn control_peer_never_reads(backend: Backend) !void {
    const harness = try Harness.init(backend);
    defer harness.deinit();
    const pair = try raw_control_peer(harness, 520);
    defer close_peer(pair.peer);
    const control_mod = @import("control.zig");
    const body = [_]u8{0x41} ** 1000;
    var sent: usize = 0;
    while (sent < 10_000) : (sent += 1) {
        harness.pump.send(pair.stream, 0x210, &body) catch break;
    }
    // Refused once the next one would take what waits past the limit (what the ring took
    // does not count).
    const per_message = protocol.header_bytes + body.len;
    try testing.expect(sent < 10_000);
    try testing.expect((sent + 1) * per_message > control_mod.outgoing_bytes_max);
    try harness.wait_for(.failed, 1);
    const failed = harness.find(pair.stream, .failed).?;
    try testing.expectEqual(-@as(i32, @intFromEnum(linux.E.NOBUFS)), failed.value);
    try testing.expectStringStartsWith(failed.payload, "slow peer: ");
    // Refused from then on, without a crash or a queue that grows.
    const refused = harness.pump.send(pair.stream, 0x210, "");
    try testing.expectError(error.Fail, refused);
}

test "pump: control messages wait in their ring while JS leaves the event queue congested" {
    try each_backend(congested_events);
}

fn send_messages(peer: *vchan_mod.Vchan, count: usize, body_bytes: u32) void {
    var message: [4096]u8 = undefined;
    message[0..8].* = (protocol.Header{ .type = 0x210, .len = body_bytes }).encode();
    @memset(message[8..][0..body_bytes], 0x42);
    for (0..count) |_| {
        // A blocking send may still find no room (0): wait for the pump to read some.
        while ((peer.send(message[0 .. 8 + body_bytes]) catch return) == 0) {
            std.time.sleep(std.time.ns_per_ms);
        }
    }
}

fn congested_events(backend: Backend) !void {
    const harness = try Harness.init(backend);
    defer harness.deinit();
    const pair = try raw_control_peer(harness, 521);
    defer close_peer(pair.peer);
    const body_bytes = 2000;
    // Twice what congests the queue: the peer must block halfway until the test drains.
    const count = 2 * events.congested_bytes / (events.record_header_bytes + body_bytes);
    const sender = try std.Thread.spawn(.{}, send_messages, .{ pair.peer, count, body_bytes });
    defer sender.join();
    const deadline = std.time.milliTimestamp() + 5000;
    while (!queue_congested(harness.pump)) {
        if (std.time.milliTimestamp() > deadline) {
            const queued = harness.pump.queue.bytes.items.len;
            std.debug.print("the queue never congested: {d} bytes\n", .{queued});
            return error.Timeout;
        }
        std.time.sleep(5 * std.time.ns_per_ms);
    }
    std.time.sleep(100 * std.time.ns_per_ms);
    {
        harness.pump.mutex.lock();
        defer harness.pump.mutex.unlock();
        const record_max = events.record_header_bytes + std.mem.alignForward(usize, body_bytes, 4);
        const queued = harness.pump.queue.bytes.items.len;
        try testing.expect(queued < events.congested_bytes + record_max);
    }
    // Drained, every message arrives, in order and whole.
    harness.wait_until(.message, count, 20_000) catch |err| {
        std.debug.print("{d} of {d} messages arrived\n", .{ harness.count_of(.message), count });
        return err;
    };
    for (harness.collected.items) |event| {
        if (event.kind != .message) continue;
        try testing.expectEqual(@as(usize, body_bytes), event.payload.len);
    }
}

fn queue_congested(pump: *Pump) bool {
    pump.mutex.lock();
    defer pump.mutex.unlock();
    return pump.queue.congested();
}

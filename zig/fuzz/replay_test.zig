//! `zig build test` side of the fuzzing: every saved input under test/fuzz/corpus/<harness>/ is
//! run again (the regression cases the fuzzer found, and the seeds), then a brief burst of
//! mutations of them with a fixed seed, so that the suite stays fast and repeatable.
//! Inputs listed in test/fuzz/corpus/known-failing.txt (`<harness>/<file>`, a known bug not
//! fixed yet) are skipped and named on stderr.
const std = @import("std");
const options = @import("fuzz_options");
const harnesses = @import("harnesses.zig");
const Harness = harnesses.Harness;

const allocator = std.testing.allocator;

fn replay(comptime name: []const u8) !void {
    const harness = comptime harnesses.get(name);
    var corpus = std.ArrayList([]u8).init(allocator);
    defer {
        for (corpus.items) |item| allocator.free(item);
        corpus.deinit();
    }
    try load_corpus(name, &corpus);
    defer if (harness.finish) |finish| finish();
    for (corpus.items) |item| harness.run(item);
    var prng = std.Random.DefaultPrng.init(0x5172_7866_757a_7a00 ^ name.len);
    const random = prng.random();
    var buffer: [4096]u8 = undefined;
    var runs: u32 = 0;
    while (runs < harness.brief_runs) : (runs += 1) {
        const items = corpus.items;
        const pick = if (items.len == 0) 0 else random.uintLessThan(usize, items.len);
        const seed: []const u8 = if (items.len == 0) "" else items[pick];
        harness.run(mutate(random, seed, &buffer));
    }
}

fn load_corpus(comptime name: []const u8, corpus: *std.ArrayList([]u8)) !void {
    var root = try std.fs.openDirAbsolute(options.corpus_dir, .{});
    defer root.close();
    const list = root.readFileAlloc(allocator, "known-failing.txt", 1 << 20);
    const known = list catch |err| switch (err) {
        error.FileNotFound => try allocator.dupe(u8, ""),
        else => return err,
    };
    defer allocator.free(known);
    var dir = root.openDir(name, .{ .iterate = true }) catch |err| switch (err) {
        error.FileNotFound => return,
        else => return err,
    };
    defer dir.close();
    var entries = dir.iterate();
    while (try entries.next()) |entry| {
        if (entry.kind != .file) continue;
        var key_buffer: [256]u8 = undefined;
        const key = try std.fmt.bufPrint(&key_buffer, "{s}/{s}", .{ name, entry.name });
        if (listed(known, key)) {
            std.debug.print("fuzz replay: skipping known failing {s}\n", .{key});
            continue;
        }
        try corpus.append(try dir.readFileAlloc(allocator, entry.name, 1 << 24));
    }
}

fn listed(list: []const u8, key: []const u8) bool {
    var lines = std.mem.tokenizeAny(u8, list, "\r\n");
    while (lines.next()) |line| {
        const trimmed = std.mem.trim(u8, line, " \t");
        if (std.mem.eql(u8, trimmed, key)) return true;
    }
    return false;
}

/// A few byte-level edits of `seed` (the kinds a coverage-guided fuzzer starts with).
fn mutate(random: std.Random, seed: []const u8, buffer: []u8) []const u8 {
    var len = @min(seed.len, buffer.len);
    @memcpy(buffer[0..len], seed[0..len]);
    const edits = 1 + random.uintLessThan(u32, 8);
    for (0..edits) |_| {
        switch (random.uintLessThan(u32, 5)) {
            0 => if (len > 0) {
                buffer[random.uintLessThan(usize, len)] ^= @as(u8, 1) << random.int(u3);
            },
            1 => if (len > 0) {
                const value = interesting[random.uintLessThan(usize, interesting.len)];
                buffer[random.uintLessThan(usize, len)] = value;
            },
            2 => if (len < buffer.len) {
                const at = random.uintLessThan(usize, len + 1);
                std.mem.copyBackwards(u8, buffer[at + 1 .. len + 1], buffer[at..len]);
                buffer[at] = random.int(u8);
                len += 1;
            },
            3 => if (len > 0) {
                const at = random.uintLessThan(usize, len);
                std.mem.copyForwards(u8, buffer[at .. len - 1], buffer[at + 1 .. len]);
                len -= 1;
            },
            else => if (len > 0) {
                len = random.uintLessThan(usize, len + 1);
            },
        }
    }
    return buffer[0..len];
}

const interesting = [_]u8{ 0, 1, 0x7f, 0x80, 0xff, '/', '.', 0x10, 0x20, 0x40 };

test "fuzz replay: names" {
    try replay("names");
}

test "fuzz replay: wire" {
    try replay("wire");
}

test "fuzz replay: layout" {
    try replay("layout");
}

test "fuzz replay: ring" {
    try replay("ring");
}

test "fuzz replay: control" {
    try replay("control");
}

test "fuzz replay: data" {
    try replay("data");
}

test "fuzz replay: unpack" {
    try replay("unpack");
}

test "fuzz replay: hello" {
    try replay("hello");
}

test "fuzz replay: host" {
    try replay("host");
}

test {
    _ = @import("input.zig");
}

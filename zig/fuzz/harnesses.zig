//! Every Zig fuzz harness by name. A harness takes any bytes and panics when a property fails;
//! `init` (optional) builds what all runs of one process share. The same list drives the
//! coverage-guided runs (zig/afl_fuzz.zig, `zig build fuzz`) and the corpus replay in
//! `zig build test` (replay_test.zig).
pub const Harness = struct {
    name: []const u8,
    run: *const fn ([]const u8) void,
    /// Inputs tried per replay in `zig build test` beyond the corpus (kept to about a second).
    brief_runs: u32,
    /// Undoes what `run` set up for the whole process (replay only: AFL++ kills its targets).
    finish: ?*const fn () void = null,
};

pub const all = [_]Harness{
    .{ .name = "names", .run = @import("names_fuzz.zig").run, .brief_runs = 20_000 },
    .{ .name = "wire", .run = @import("wire_fuzz.zig").run, .brief_runs = 20_000 },
    .{ .name = "layout", .run = @import("layout_fuzz.zig").run, .brief_runs = 20_000 },
    .{ .name = "ring", .run = @import("ring_fuzz.zig").run, .brief_runs = 5_000 },
    .{ .name = "control", .run = @import("control_fuzz.zig").run, .brief_runs = 5_000 },
    .{ .name = "data", .run = @import("data_fuzz.zig").run, .brief_runs = 3_000 },
    .{ .name = "unpack", .run = unpack.run, .brief_runs = 1_000, .finish = unpack.finish },
    .{ .name = "hello", .run = @import("hello_fuzz.zig").run, .brief_runs = 20_000 },
    .{ .name = "host", .run = @import("host_fuzz.zig").run, .brief_runs = 20_000 },
};

const unpack = @import("unpack_fuzz.zig");

pub fn get(comptime name: []const u8) Harness {
    for (all) |harness| {
        if (comptime std.mem.eql(u8, harness.name, name)) return harness;
    }
    @compileError("no fuzz harness named " ++ name);
}

const std = @import("std");

comptime {
    const list = @import("list.zig").names;
    std.debug.assert(list.len == all.len);
    for (list, all) |name, harness| std.debug.assert(std.mem.eql(u8, name, harness.name));
}

//! Builds libqrx.so (the data plane loaded by Bun through bun:ffi) and its tests.
//! `zig build` installs zig-out/lib/libqrx.so and zig-out/bin/qrexec-client-vm (the client's
//! native front end); `zig build test` runs every Zig test.
const std = @import("std");
const builtin = @import("builtin");

comptime {
    // One Zig for everyone: .zig-version pins it and scripts/bootstrap.sh installs it.
    const required = std.SemanticVersion{ .major = 0, .minor = 14, .patch = 1 };
    if (builtin.zig_version.order(required) != .eq) {
        @compileError("qrx needs Zig 0.14.1 (see .zig-version); run `npm run setup`");
    }
}

pub fn build(b: *std.Build) void {
    const target = b.standardTargetOptions(.{});
    const optimize = b.standardOptimizeOption(.{});

    // libc is linked because the library starts threads inside Bun (pthreads).
    const lib_module = b.createModule(.{
        .root_source_file = b.path("zig/lib.zig"),
        .target = target,
        .optimize = optimize,
        .link_libc = true,
    });
    const lib = b.addLibrary(.{ .name = "qrx", .linkage = .dynamic, .root_module = lib_module });
    b.installArtifact(lib);

    // qrexec-client-vm's front end: static and without libc, so it starts in well under 1 ms.
    const front_module = b.createModule(.{
        .root_source_file = b.path("zig/qrexec_client_vm.zig"),
        .target = target,
        .optimize = optimize,
        .link_libc = false,
        .single_threaded = true,
        .strip = optimize != .Debug,
    });
    const front = b.addExecutable(.{ .name = "qrexec-client-vm", .root_module = front_module });
    // Zig's start code raises RLIMIT_STACK to the executable's stack size (16 MiB by default),
    // and the fallback Bun CLI and every program it runs would inherit that. Its own frames need
    // under 64 KiB (the largest holds the fallback's argv), so 256 KiB leaves a usual limit alone.
    front.stack_size = 256 * 1024;
    b.installArtifact(front);

    const test_module = b.createModule(.{
        .root_source_file = b.path("zig/test.zig"),
        .target = target,
        .optimize = b.option(std.builtin.OptimizeMode, "test-optimize", "tests' mode") orelse .Debug,
        .link_libc = true,
    });
    const tests = b.addTest(.{
        .root_module = test_module,
        .filters = if (b.option([]const u8, "test-filter", "run only matching tests")) |f|
            b.dupeStrings(&.{f})
        else
            &.{},
    });
    const run_tests = b.addRunArtifact(tests);
    const test_step = b.step("test", "Run the Zig unit tests");
    test_step.dependOn(&run_tests.step);

    // The data pump's model test (zig/pump/data_model_test.zig) for longer runs: a random seed
    // (or -Dseed) for -Dseconds, optimised with its assertions on. `zig build test` runs it
    // briefly with a fixed seed.
    const model_module = b.createModule(.{
        .root_source_file = b.path("zig/test.zig"),
        .target = target,
        .optimize = .ReleaseSafe,
        .link_libc = true,
    });
    const model_tests = b.addTest(.{ .root_module = model_module, .filters = &.{"data model"} });
    const run_model = b.addRunArtifact(model_tests);
    run_model.has_side_effects = true;
    const seconds = b.option(u64, "seconds", "model test: seconds to run (default 60)") orelse 60;
    run_model.setEnvironmentVariable("QRX_MODEL_SECONDS", b.fmt("{d}", .{seconds}));
    if (b.option(u64, "seed", "model test: the first run's seed (default: random)")) |seed| {
        run_model.setEnvironmentVariable("QRX_MODEL_SEED", b.fmt("{d}", .{seed}));
    }
    const model_step = b.step("model", "Run the data pump's model test with random seeds");
    model_step.dependOn(&run_model.step);
}

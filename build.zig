//! Builds libqrx.so (the data plane loaded by Bun through bun:ffi) and its tests.
//! `zig build` installs zig-out/lib/libqrx.so, zig-out/bin/qrexec-client-vm (the client's
//! native front end), zig-out/bin/qrexec-client (dom0 -> VM calls natively) and
//! zig-out/bin/qfile-agent, qfile-unpacker and qvm-copy (file copy); `zig build test` runs every
//! Zig test; `zig build fuzz` builds the AFL++ fuzz targets (zig/fuzz/, docs/reliability.md).
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

    add_programs(b, target, optimize);

    const test_module = b.createModule(.{
        .root_source_file = b.path("zig/test.zig"),
        .target = target,
        .optimize = b.option(
            std.builtin.OptimizeMode,
            "test-optimize",
            "tests' mode",
        ) orelse .Debug,
        .link_libc = true,
    });
    const fuzz_options = b.addOptions();
    fuzz_options.addOption([]const u8, "corpus_dir", b.pathFromRoot("test/fuzz/corpus"));
    test_module.addOptions("fuzz_options", fuzz_options);
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
    add_tidy_test(b, target, test_step);

    // The data pump's model test (zig/pump/data_model_test.zig) for longer runs: a random seed
    // (or -Dseed) for -Dseconds, optimised with its assertions on. `zig build test` runs it
    // briefly with a fixed seed.
    const model_module = b.createModule(.{
        .root_source_file = b.path("zig/test.zig"),
        .target = target,
        .optimize = .ReleaseSafe,
        .link_libc = true,
    });
    model_module.addOptions("fuzz_options", fuzz_options);
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
    add_fuzz_targets(b, target);
}

/// The native programs: qrexec-client-vm's front end, qrexec-client, and the file-copy ones.
fn add_programs(
    b: *std.Build,
    target: std.Build.ResolvedTarget,
    optimize: std.builtin.OptimizeMode,
) void {
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

    // qrexec-client's native program for dom0 -> VM calls: it runs the pump itself, so it links
    // libc (threads, the vDSO clock) like the library.
    const client_module = b.createModule(.{
        .root_source_file = b.path("zig/qrexec_client.zig"),
        .target = target,
        .optimize = optimize,
        .link_libc = true,
        .strip = optimize != .Debug,
    });
    const client = b.addExecutable(.{ .name = "qrexec-client", .root_module = client_module });
    b.installArtifact(client);

    // The file-copy programs, natively: their work is the library's filecopy engine.
    for ([_][2][]const u8{
        .{ "qfile-agent", "zig/qfile_agent.zig" },
        .{ "qfile-unpacker", "zig/qfile_unpacker.zig" },
        .{ "qvm-copy", "zig/qvm_copy.zig" },
    }) |program| {
        const module = b.createModule(.{
            .root_source_file = b.path(program[1]),
            .target = target,
            .optimize = optimize,
            .link_libc = true,
            .single_threaded = true,
            .strip = optimize != .Debug,
        });
        b.installArtifact(b.addExecutable(.{ .name = program[0], .root_module = module }));
    }
}

/// The Zig rules (zig/tidy.zig: line and function lengths, commented `catch {}`), run from the
/// repository root over the sources.
fn add_tidy_test(b: *std.Build, target: std.Build.ResolvedTarget, test_step: *std.Build.Step) void {
    const tidy = b.addTest(.{ .root_module = b.createModule(.{
        .root_source_file = b.path("zig/tidy.zig"),
        .target = target,
    }) });
    const run_tidy = b.addRunArtifact(tidy);
    run_tidy.setCwd(b.path("."));
    test_step.dependOn(&run_tidy.step);
}

/// `zig build fuzz`: one AFL++ persistent-mode executable per harness in zig-out/fuzz/, the
/// harness compiled by Zig with trace-pc-guard coverage and linked by afl-clang-fast around
/// zig/fuzz/afl_driver.c (scripts/fuzz.sh runs them; `zig build test` needs none of this).
fn add_fuzz_targets(b: *std.Build, target: std.Build.ResolvedTarget) void {
    const fuzz_step = b.step("fuzz", "Build the AFL++ fuzz targets (needs afl-clang-fast)");
    for (@import("zig/fuzz/list.zig").names) |name| {
        const options = b.addOptions();
        options.addOption([]const u8, "harness", name);
        const module = b.createModule(.{
            .root_source_file = b.path("zig/afl_fuzz.zig"),
            .target = target,
            .optimize = .ReleaseSafe,
            .link_libc = true,
        });
        module.addOptions("fuzz_options", options);
        const object = b.addObject(.{ .name = b.fmt("fuzz-{s}", .{name}), .root_module = module });
        object.sanitize_coverage_trace_pc_guard = true;
        object.bundle_compiler_rt = true;
        const link = b.addSystemCommand(&.{ "afl-clang-fast", "-O2", "-o" });
        const executable = link.addOutputFileArg(name);
        link.addFileArg(b.path("zig/fuzz/afl_driver.c"));
        link.addFileArg(object.getEmittedBin());
        link.addArg("-lpthread");
        const install = b.addInstallFileWithDir(executable, .{ .custom = "fuzz" }, name);
        fuzz_step.dependOn(&install.step);
    }
}

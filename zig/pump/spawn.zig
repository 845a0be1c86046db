//! Starting a service from the pump thread, the moment its data vchan connects (`Spec`, given
//! with `qp_attach`): no wait for JS to hear of the connection and spawn it. glibc's
//! posix_spawn (a vfork-style clone): the child gets the signal mask emptied and every handler
//! back to the default (the pump thread blocks all signals; Bun and we install handlers), its
//! stdio from the socketpairs and pipe the pump made, and nothing else (ours are close-on-exec).
const std = @import("std");
const linux = std.os.linux;

const diag = @import("../diag.zig");
const exec = @import("../exec.zig");
const Fail = diag.Fail;

/// What JS decided at the exec request: argv (an absolute path first) and environment, each a
/// NUL-terminated string in one block, and the stdio flags of `make_service_stdio`.
pub const Spec = struct {
    block: []u8,
    /// Null-terminated arrays of pointers into `block`.
    argv: exec.PointerList,
    envp: exec.PointerList,
    with_stderr: bool,
    stdout_pipe: bool,

    /// Longest argv + environment taken (the kernel's own limit for a whole exec is 2 MiB).
    pub const block_bytes_max = 1 << 20;

    /// `strings` holds `argc` argv strings then the environment's, each NUL-terminated.
    pub fn init(
        allocator: std.mem.Allocator,
        strings: []const u8,
        argc: u32,
        with_stderr: bool,
        stdout_pipe: bool,
    ) Fail!*Spec {
        if (strings.len == 0 or strings.len > block_bytes_max or strings[strings.len - 1] != 0) {
            return diag.fail(.INVAL, "a spawn's strings must be NUL-terminated, 1 B to 1 MiB", .{});
        }
        const count = std.mem.count(u8, strings, "\x00");
        if (argc == 0 or argc > count) {
            return diag.fail(.INVAL, "{d} argv strings asked of {d} given", .{ argc, count });
        }
        if (strings[0] != '/') {
            return diag.fail(.INVAL, "a spawned program's path must be absolute", .{});
        }
        var split: usize = 0;
        for (0..argc) |_| split = std.mem.indexOfScalarPos(u8, strings, split, 0).? + 1;
        const spec = allocator.create(Spec) catch return oom();
        errdefer allocator.destroy(spec);
        const block = allocator.dupe(u8, strings) catch return oom();
        errdefer allocator.free(block);
        const argv = exec.pointers(allocator, block[0..split], argc) catch return oom();
        errdefer allocator.free(argv);
        const envc: u32 = @intCast(count - argc);
        const envp = exec.pointers(allocator, block[split..], envc) catch return oom();
        spec.* = .{
            .block = block,
            .argv = argv,
            .envp = envp,
            .with_stderr = with_stderr,
            .stdout_pipe = stdout_pipe,
        };
        return spec;
    }

    pub fn deinit(self: *Spec, allocator: std.mem.Allocator) void {
        allocator.free(self.block);
        allocator.free(self.argv);
        allocator.free(self.envp);
        allocator.destroy(self);
    }
};

fn oom() Fail {
    return diag.fail(.NOMEM, "out of memory", .{});
}

// glibc's, opaque here: only its functions touch them (sizes with room to spare).
const FileActions = extern struct { bytes: [80]u8 align(8) };
const Attributes = extern struct { bytes: [336]u8 align(8) };
const SignalSet = extern struct { bytes: [128]u8 align(8) };
extern "c" fn posix_spawn(
    pid: *linux.pid_t,
    path: [*:0]const u8,
    actions: *const FileActions,
    attributes: *const Attributes,
    argv: [*:null]const ?[*:0]const u8,
    envp: [*:null]const ?[*:0]const u8,
) c_int;
extern "c" fn posix_spawn_file_actions_init(actions: *FileActions) c_int;
extern "c" fn posix_spawn_file_actions_destroy(actions: *FileActions) c_int;
extern "c" fn posix_spawn_file_actions_adddup2(actions: *FileActions, fd: c_int, to: c_int) c_int;
extern "c" fn posix_spawnattr_init(attributes: *Attributes) c_int;
extern "c" fn posix_spawnattr_destroy(attributes: *Attributes) c_int;
extern "c" fn posix_spawnattr_setflags(attributes: *Attributes, flags: c_short) c_int;
extern "c" fn posix_spawnattr_setsigmask(attributes: *Attributes, mask: *const SignalSet) c_int;
extern "c" fn posix_spawnattr_setsigdefault(attributes: *Attributes, set: *const SignalSet) c_int;
extern "c" fn sigemptyset(set: *SignalSet) c_int;
extern "c" fn sigfillset(set: *SignalSet) c_int;

const POSIX_SPAWN_SETSIGDEF = 0x04;
const POSIX_SPAWN_SETSIGMASK = 0x08;

/// Starts `spec`'s program with `stdio` as its fds 0-2 (-1: its fd 2 stays ours, as a service
/// whose stderr is not captured). Returns the pid, or the errno of its exec.
pub fn start(spec: *const Spec, stdio: [3]i32) union(enum) { pid: linux.pid_t, errno: linux.E } {
    var actions: FileActions = undefined;
    var attributes: Attributes = undefined;
    if (posix_spawn_file_actions_init(&actions) != 0) return .{ .errno = .NOMEM };
    defer _ = posix_spawn_file_actions_destroy(&actions);
    if (posix_spawnattr_init(&attributes) != 0) return .{ .errno = .NOMEM };
    defer _ = posix_spawnattr_destroy(&attributes);
    for (stdio, 0..) |fd, target| {
        if (fd < 0) continue;
        // dup2 onto the target clears its close-on-exec.
        const added = posix_spawn_file_actions_adddup2(&actions, fd, @intCast(target));
        if (added != 0) return .{ .errno = @enumFromInt(added) };
    }
    var empty: SignalSet = undefined;
    var all: SignalSet = undefined;
    _ = sigemptyset(&empty);
    _ = sigfillset(&all);
    _ = posix_spawnattr_setsigmask(&attributes, &empty);
    _ = posix_spawnattr_setsigdefault(&attributes, &all);
    _ = posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    var pid: linux.pid_t = 0;
    const path = spec.argv[0].?;
    const failed = posix_spawn(&pid, path, &actions, &attributes, spec.argv.ptr, spec.envp.ptr);
    if (failed != 0) return .{ .errno = @enumFromInt(failed) };
    return .{ .pid = pid };
}

test "spawn: a spec's strings are checked and split into argv and environment" {
    const allocator = std.testing.allocator;
    const spec = try Spec.init(allocator, "/bin/sh\x00-c\x00true\x00A=1\x00", 3, true, false);
    defer spec.deinit(allocator);
    try std.testing.expectEqualStrings("true", std.mem.span(spec.argv[2].?));
    try std.testing.expect(spec.argv[3] == null);
    try std.testing.expectEqualStrings("A=1", std.mem.span(spec.envp[0].?));
    try std.testing.expect(spec.envp[1] == null);
    const refused = [_]struct { strings: []const u8, argc: u32 }{
        .{ .strings = "sh\x00", .argc = 1 }, // not a path
        .{ .strings = "/bin/sh", .argc = 1 }, // not NUL-terminated
        .{ .strings = "/bin/sh\x00", .argc = 2 }, // fewer strings than argv
        .{ .strings = "/bin/sh\x00", .argc = 0 }, // no program
        .{ .strings = "", .argc = 0 },
    };
    for (refused) |case| {
        try std.testing.expectError(
            error.Fail,
            Spec.init(allocator, case.strings, case.argc, false, false),
        );
    }
}

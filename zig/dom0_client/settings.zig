//! What the environment says about a call's vchan, read as src/native.ts and src/paths.ts read
//! it. A value those would read differently from a plain one (or refuse) is null here, and the
//! Bun CLI runs the call instead.
const std = @import("std");
const bun_cli = @import("../client_host/bun_cli.zig");
const constants = @import("../constants.zig");
const Backend = @import("../vchan/vchan.zig").Backend;
const path_join = @import("../path_join.zig");

pub const Settings = struct {
    backend: Backend,
    /// The rendezvous directory (shm) or VCHAN_SOCKET_DIR (socket).
    dir: []const u8,
    spin_ns: u32 = constants.spin_ns_default,
    pages_max: u32 = 0,
    /// Backing for `dir` when it is built from parts.
    dir_buffer: [std.fs.max_path_bytes]u8 = undefined,
};

/// Variables that only the Bun CLI honours: another library build, the mirage bug knob, the
/// timing trace, and the switch that turns the native client off.
const bun_only = [_][]const u8{ "QRX_NATIVE_LIB", "QRX_MIRAGE_BUGS", "QRX_TRACE" };

pub fn native_allowed() bool {
    for (bun_only) |name| if (set(name) != null) return false;
    return !std.mem.eql(u8, bun_cli.getenv("QRX_CLIENT_NATIVE") orelse "", "off");
}

/// A variable's value when it is set and not empty (JavaScript's `||` treats "" as unset).
fn set(name: []const u8) ?[]const u8 {
    const value = bun_cli.getenv(name) orelse return null;
    return if (value.len > 0) value else null;
}

pub fn from_environment() ?*const Settings {
    const S = struct {
        var settings: Settings = undefined;
    };
    const settings = &S.settings;
    const transport = bun_cli.getenv("QRX_VCHAN") orelse "";
    if (transport.len == 0 or std.mem.eql(u8, transport, "shm")) {
        settings.* = .{ .backend = .shm, .dir = "" };
        settings.dir = shm_dir(&settings.dir_buffer) orelse return null;
    } else if (std.mem.eql(u8, transport, "socket")) {
        const dir = set("VCHAN_SOCKET_DIR") orelse "/var/run/vchan";
        settings.* = .{ .backend = .socket, .dir = dir };
    } else return null;
    if (set("QRX_SPIN_NS")) |value| {
        settings.spin_ns = number(value, constants.spin_ns_max) orelse return null;
    }
    if (set("QRX_MAX_PAGES")) |value| {
        settings.pages_max = number(value, std.math.maxInt(i32)) orelse return null;
    }
    return settings;
}

/// Digits only, at most `max`.
fn number(value: []const u8, max: u32) ?u32 {
    for (value) |c| if (c < '0' or c > '9') return null;
    const parsed = std.fmt.parseInt(u32, value, 10) catch return null;
    return if (parsed <= max) parsed else null;
}

/// QRX_VCHAN_DIR, else `vchan/` in the state directory (src/paths.ts).
fn shm_dir(buffer: []u8) ?[]const u8 {
    if (set("QRX_VCHAN_DIR")) |dir| return dir;
    if (set("QRX_DIR")) |dir| return path_join.join(buffer, &.{ dir, "vchan" });
    if (set("XDG_RUNTIME_DIR")) |dir| return path_join.join(buffer, &.{ dir, "qrx", "vchan" });
    const state = [_][]const u8{ ".local", "state", "qrx", "vchan" };
    if (set("HOME")) |dir| return path_join.join(buffer, &([_][]const u8{dir} ++ state));
    return null;
}

/// `<socket dir>/qrexec.<target>` (daemonSocketPath), with its NUL.
pub fn daemon_socket_path(buffer: []u8, socket_dir: []const u8, target: []const u8) ?[]const u8 {
    var name_buffer: [256]u8 = undefined;
    const name = std.fmt.bufPrint(&name_buffer, "qrexec.{s}", .{target}) catch return null;
    return path_join.join(buffer, &.{ socket_dir, name });
}

test "settings: paths are joined only where path.join would not change them" {
    var buffer: [64]u8 = undefined;
    const expectEqualStrings = std.testing.expectEqualStrings;
    try expectEqualStrings("/run/q/qrexec.vault", daemon_socket_path(&buffer, "/run/q", "vault").?);
    try expectEqualStrings("rel/qrexec.vault", daemon_socket_path(&buffer, "rel", "vault").?);
    try std.testing.expect(daemon_socket_path(&buffer, "/run/q/", "vault") == null);
    try std.testing.expect(daemon_socket_path(&buffer, "/run//q", "vault") == null);
    try std.testing.expect(daemon_socket_path(&buffer, "/run/../q", "vault") == null);
    try std.testing.expect(daemon_socket_path(&buffer, "./q", "vault") == null);
    try std.testing.expect(daemon_socket_path(&buffer, "/", "vault") == null);
    try std.testing.expect(daemon_socket_path(&buffer, "/q" ** 40, "vault") == null);
}

test "settings: numbers as the Bun CLI would take them" {
    try std.testing.expectEqual(@as(?u32, 0), number("0", 5));
    try std.testing.expectEqual(@as(?u32, 5), number("005", 5));
    try std.testing.expect(number("6", 5) == null);
    try std.testing.expect(number("1e3", 5000) == null);
    try std.testing.expect(number(" 1", 5) == null);
}

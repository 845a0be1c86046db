//! Rendezvous socket names shared by both vchan backends:
//! `<dir>/<prefix>.<server>.<client>.<port>.sock` (shm: `shmvchan`, vchan-socket: `vchan`),
//! kept within `sockaddr_un`'s 108 bytes.
const std = @import("std");
const linux = std.os.linux;
const constants = @import("../constants.zig");
const diag = @import("../diag.zig");

pub const SocketPath = struct {
    buffer: [constants.socket_path_bytes_max + 1]u8 = undefined,
    len: u32 = 0,

    pub fn init(
        dir: []const u8,
        prefix: []const u8,
        server_domain: i32,
        client_domain: i32,
        port: i32,
    ) diag.Fail!SocketPath {
        var result = SocketPath{};
        const written = std.fmt.bufPrintZ(
            &result.buffer,
            "{s}/{s}.{d}.{d}.{d}.sock",
            .{ dir, prefix, server_domain, client_domain, port },
        ) catch {
            return diag.fail(
                .NAMETOOLONG,
                "vchan directory {s} is too long for a unix socket path (max {d} bytes)",
                .{ dir, constants.socket_path_bytes_max },
            );
        };
        result.len = @intCast(written.len);
        return result;
    }

    pub fn slice(self: *const SocketPath) [:0]const u8 {
        return self.buffer[0..self.len :0];
    }

    pub fn address(self: *const SocketPath) linux.sockaddr.un {
        return address_of(self.slice());
    }
};

pub fn address_of(path: []const u8) linux.sockaddr.un {
    std.debug.assert(path.len <= constants.socket_path_bytes_max);
    var result = linux.sockaddr.un{ .family = linux.AF.UNIX, .path = [_]u8{0} ** 108 };
    @memcpy(result.path[0..path.len], path);
    return result;
}

pub fn make_directory(dir: []const u8) diag.Fail!void {
    std.fs.cwd().makePath(dir) catch |err| {
        return diag.fail(
            .ACCES,
            "cannot create vchan directory {s}: {s}",
            .{ dir, @errorName(err) },
        );
    };
}

//! The qubes.Filecopy receiver's stream engine (qfile-unpacker's `do_unpack`; spec filecopy.md
//! §2, §3.4-§3.10): reads entries from `in_fd`, creates them below `dir_fd`, and writes the one
//! result message (§2.4) to `out_fd`.
//!
//! Everything from the stream is untrusted: lengths are checked against the limits before any
//! buffer is sized by them, names and symlink targets pass names.zig before any syscall sees
//! them, and syscalls only ever get one path component relative to a directory fd opened
//! component by component with O_NOFOLLOW, from `dir_fd` afresh for every entry (so a directory
//! moved out of the target is not followed; upstream's bind mount forbids that move). A regular
//! file is invisible until complete (O_TMPFILE + linkat), so an error leaves nothing
//! half-written under a final name (except in the O_EXCL fallback, which upstream has too: an
//! unreadable mode-0 file). Permission checks apply as to the receiving user even when it is
//! root (fs_caps.zig), as upstream's `setfsuid` makes them.
//!
//! Blocking, on the caller's thread. Buffers are allocated at the start and freed at the end;
//! the fds stay the caller's (close `in_fd` promptly after an error so the sender sees EPIPE).
const std = @import("std");
const assert = std.debug.assert;
const linux = std.os.linux;

const diag = @import("../diag.zig");
const wire = @import("wire.zig");
const names = @import("names.zig");
const fs_caps = @import("fs_caps.zig");

pub const Flags = packed struct(u32) {
    /// `--allow-all-names`: character rules off, structure and symlink rules on.
    allow_all_names: bool = false,
    /// `-v`: every non-directory name to fd 2 as it is unpacked.
    verbose: bool = false,
    _pad: u30 = 0,
};

/// What `unpack` counts. src/native.ts reads it by offsets.
pub const Stats = extern struct {
    files: u64,
    dirs: u64,
    symlinks: u64,
    /// Regular-file content written.
    bytes: u64,
    crc: u32,
    code: u32,
};

comptime {
    assert(@sizeOf(Stats) == 40);
    assert(@offsetOf(Stats, "crc") == 32);
    assert(@offsetOf(Stats, "code") == 36);
}

/// One read from the stream fills at most this much.
pub const in_bytes: usize = 1024 * 1024;

/// `Report`: stop and send the result (`Unpacker.code`, `Unpacker.last`); `Fatal`: stop without a
/// result (upstream's `errx(1, ...)`), with diag's message.
const Stop = error{ Report, Fatal };

/// Upstream hands a directory's failed name check (a negative number) straight to its exit
/// path (spec §3.7): the wire carries (uint32)-84 and the exit status is 172.
pub const code_directory_name_invalid: u32 = @bitCast(-@as(i32, @intFromEnum(linux.E.ILSEQ)));

/// What the result's extension carries.
const Last = enum {
    /// No extension: the failure came before a name was read.
    none,
    /// The current (or last) entry's name.
    name,
    /// The parent component that could not be opened (upstream's `opendir_safe`).
    component,
    /// A symlink's target, which upstream reports when the link is refused (§3.5).
    target,
};

pub const Unpacker = struct {
    in_fd: i32,
    out_fd: i32,
    dir_fd: i32,
    flags: Flags,
    stats: *Stats,
    allocator: std.mem.Allocator,

    in: []u8,
    in_pos: usize = 0,
    in_len: usize = 0,
    crc: u32 = 0,

    code: u32 = 0,
    last: Last = .name,
    /// The current entry's name, NUL-terminated at `name_len` (cut at the first NUL sent).
    name: [wire.path_length_max + 1]u8 = undefined,
    name_len: u32 = 0,
    target: [wire.path_length_max + 1]u8 = undefined,
    target_len: u32 = 0,

    /// With `Last.component`: where the component is in `name`.
    component_start: u32 = 0,
    component_len: u32 = 0,

    /// Reads from `in_fd` so far: a file whose content needed one may have waited for the peer
    /// since its parent was opened (see `link_file`).
    fills: u64 = 0,
    /// `--wait-for-space`: free bytes to keep beyond each file (0: do not wait).
    space_margin: u64 = 0,

    /// O_TMPFILE + linkat through /proc/self/fd; off when /proc is missing or the filesystem
    /// does not support O_TMPFILE (then O_CREAT|O_EXCL with mode 0, as upstream).
    use_tmpfile: bool,
    /// /proc/self/fd, opened once (O_PATH) when there is one, -1 otherwise, as upstream keeps
    /// /proc/<pid>/fd: a link looks up one name in it instead of walking /proc/self/fd/N.
    proc_fd_dir: i32,

    pub fn init(
        allocator: std.mem.Allocator,
        in_fd: i32,
        out_fd: i32,
        dir_fd: i32,
        flags: Flags,
        stats: *Stats,
    ) diag.Fail!*Unpacker {
        return init_sized(allocator, in_bytes, in_fd, out_fd, dir_fd, flags, stats);
    }

    /// `init` with a stream buffer of `in_size` bytes instead of `in_bytes`. For the fuzz harness
    /// (zig/fuzz/unpack_fuzz.zig): a safe build fills every new buffer with 0xaa, and 1 MiB per
    /// input was most of its time; a small buffer also splits headers across reads.
    pub fn init_sized(
        allocator: std.mem.Allocator,
        in_size: usize,
        in_fd: i32,
        out_fd: i32,
        dir_fd: i32,
        flags: Flags,
        stats: *Stats,
    ) diag.Fail!*Unpacker {
        assert(in_size > 0);
        const self = allocator.create(Unpacker) catch return diag.fail(
            .NOMEM,
            "out of memory",
            .{},
        );
        errdefer allocator.destroy(self);
        const in = allocator.alloc(u8, in_size) catch return diag.fail(
            .NOMEM,
            "out of memory",
            .{},
        );
        const proc_fd_dir = open_proc_fd_dir();
        self.* = .{
            .in_fd = in_fd,
            .out_fd = out_fd,
            .dir_fd = dir_fd,
            .flags = flags,
            .stats = stats,
            .allocator = allocator,
            .in = in,
            .use_tmpfile = proc_fd_dir >= 0,
            .proc_fd_dir = proc_fd_dir,
        };
        stats.* = std.mem.zeroes(Stats);
        return self;
    }

    pub fn deinit(self: *Unpacker) void {
        if (self.proc_fd_dir >= 0) _ = linux.close(self.proc_fd_dir);
        self.allocator.free(self.in);
        const allocator = self.allocator;
        allocator.destroy(self);
    }

    /// The whole receiver. Returns the code it reported, or `Fatal` (nothing sent).
    pub fn run(self: *Unpacker) diag.Fail!u32 {
        const caps = fs_caps.drop();
        defer fs_caps.restore(caps);
        self.name_len = 0;
        self.name[0] = 0;
        self.receive_all() catch |err| switch (err) {
            error.Fatal => {
                self.stats.crc = self.crc;
                return error.Fail;
            },
            error.Report => {},
        };
        self.stats.crc = self.crc;
        self.stats.code = self.code;
        self.send_result();
        return self.code;
    }

    fn receive_all(self: *Unpacker) Stop!void {
        while (true) {
            var raw: [wire.header_bytes]u8 = undefined;
            // Upstream reads a header with one read_all: EOF anywhere in it, as before it, means
            // "no end marker" (EREMOTEIO, §2.6); LEGAL_EOF is for EOF inside an entry's body.
            if (try self.read_stream(&raw) < raw.len) return self.report(.REMOTEIO, .name);
            const untrusted = wire.FileHeader.decode(&raw);
            if (untrusted.namelen == 0) break; // end marker
            try self.receive_entry(untrusted);
        }
        // "Success" must mean "on disk": qvm-move deletes the source after it (§3.10).
        const rc = linux.syncfs(self.dir_fd);
        if (linux.E.init(rc) != .SUCCESS) return self.report(linux.E.init(rc), .name);
        self.code = 0;
        self.last = .name;
    }

    fn receive_entry(self: *Unpacker, untrusted: wire.FileHeader) Stop!void {
        if (untrusted.namelen > wire.name_bytes_max) return self.report(.NAMETOOLONG, .none);
        const namelen: u32 = untrusted.namelen;
        const name_bytes = self.name[0..namelen];
        if (try self.read_stream(name_bytes) < namelen) return self.report_legal_eof(.none);
        self.name[namelen] = 0;
        self.name_len = @intCast(std.mem.indexOfScalar(u8, self.name[0 .. namelen + 1], 0).?);
        self.last = .name;
        switch (wire.kind_of(untrusted.mode)) {
            .regular => try self.receive_file(untrusted),
            .directory => try self.receive_directory(untrusted),
            .symlink => try self.receive_symlink(untrusted),
            .other => return self.report(.INVAL, .name),
        }
    }

    fn validate_name(self: *Unpacker) Stop!void {
        names.validatePath(
            self.name[0..self.name_len],
            self.names_flags(),
        ) catch return self.report(.ILSEQ, .name);
    }

    fn names_flags(self: *const Unpacker) names.Flags {
        return .{ .allow_all_names = self.flags.allow_all_names };
    }

    fn receive_file(self: *Unpacker, untrusted: wire.FileHeader) Stop!void {
        try self.validate_name();
        if (untrusted.filelen > std.math.maxInt(i64)) return self.report(.DQUOT, .name);
        const filelen = untrusted.filelen;
        self.say_name();
        const place = try self.open_parent();
        defer place.close();
        const file = try self.create_file(place);
        defer _ = linux.close(file.fd);
        const slept = try self.wait_for_space(file.fd, filelen);
        const fills = self.fills;
        try self.copy_content(file.fd, filelen);
        try self.link_file(place, file, slept or self.fills != fills);
        try self.apply_mode_and_times(file.fd, untrusted);
        self.stats.files += 1;
    }

    const Created = struct {
        fd: i32,
        /// Already under its final name (the O_EXCL fallback).
        linked: bool,
    };

    fn create_file(self: *Unpacker, place: Place) Stop!Created {
        if (self.use_tmpfile) {
            const flags: linux.O = .{
                .ACCMODE = .WRONLY,
                .TMPFILE = true,
                .DIRECTORY = true,
                .CLOEXEC = true,
            };
            const rc = linux.openat(place.fd, ".", flags, 0o700);
            switch (linux.E.init(rc)) {
                .SUCCESS => return .{ .fd = @intCast(rc), .linked = false },
                // No O_TMPFILE here: the fallback for the rest of the run (upstream does too).
                .OPNOTSUPP, .ISDIR, .NOENT => self.use_tmpfile = false,
                else => |errno| return self.report(errno, .name),
            }
        }
        const flags: linux.O = .{
            .ACCMODE = .WRONLY,
            .CREAT = true,
            .EXCL = true,
            .NOFOLLOW = true,
            .CLOEXEC = true,
        };
        const rc = linux.openat(place.fd, place.last, flags, 0);
        if (linux.E.init(rc) != .SUCCESS) return self.report(linux.E.init(rc), .name);
        return .{ .fd = @intCast(rc), .linked = true };
    }

    /// Gives a complete file its name. When we waited (for the peer's content, or for space)
    /// since the parent was opened, it is opened again from the target first: a directory the
    /// local user moved out of the target meanwhile is then not found (ENOENT), instead of
    /// getting the file at its new place.
    fn link_file(self: *Unpacker, place: Place, file: Created, waited: bool) Stop!void {
        if (!waited) {
            if (!file.linked) try self.link_tmpfile(file.fd, place);
            return;
        }
        const again = try self.open_parent();
        defer again.close();
        if (!file.linked) return self.link_tmpfile(file.fd, again);
        // The fallback named the file at once: it must still be in the target's directory.
        if (!same_inode(place.fd, again.fd)) return self.report(.XDEV, .name);
    }

    fn link_tmpfile(self: *Unpacker, fd: i32, place: Place) Stop!void {
        assert(self.proc_fd_dir >= 0);
        var fd_name: [16]u8 = undefined;
        const name = std.fmt.bufPrintZ(&fd_name, "{d}", .{fd}) catch unreachable;
        const follow = linux.AT.SYMLINK_FOLLOW;
        const rc = linux.linkat(self.proc_fd_dir, name, place.fd, place.last, follow);
        if (linux.E.init(rc) != .SUCCESS) return self.report(linux.E.init(rc), .name);
    }

    /// `--wait-for-space MARGIN` (spec §3.9, for restores into a small disk): before a file's
    /// content, wait until its filesystem has room for it and the margin, looking once a second.
    /// Returns whether it slept.
    fn wait_for_space(self: *Unpacker, fd: i32, filelen: u64) Stop!bool {
        if (self.space_margin == 0) return false;
        const needed = filelen +| self.space_margin;
        var slept = false;
        while (true) {
            var st: Statfs = undefined;
            const rc = linux.syscall2(.fstatfs, @as(usize, @intCast(fd)), @intFromPtr(&st));
            if (linux.E.init(rc) != .SUCCESS) return self.report(linux.E.init(rc), .name);
            if (st.bavail *| st.bsize >= needed) return slept;
            const second: linux.timespec = .{ .sec = 1, .nsec = 0 };
            _ = linux.nanosleep(&second, null);
            slept = true;
        }
    }

    /// Exactly `filelen` bytes from the stream into `fd`.
    fn copy_content(self: *Unpacker, fd: i32, filelen: u64) Stop!void {
        var remaining = filelen;
        while (remaining > 0) {
            if (self.in_pos == self.in_len) {
                if (!try self.fill()) return self.report_legal_eof(.name);
            }
            const available = self.in_len - self.in_pos;
            const chunk = self.in[self.in_pos..][0..@intCast(@min(available, remaining))];
            self.crc = wire.crc32(self.crc, chunk);
            self.in_pos += chunk.len;
            remaining -= chunk.len;
            try self.write_file(fd, chunk);
            self.stats.bytes += chunk.len;
        }
    }

    fn write_file(self: *Unpacker, fd: i32, bytes: []const u8) Stop!void {
        var written: usize = 0;
        while (written < bytes.len) {
            const rc = linux.write(fd, bytes[written..].ptr, bytes.len - written);
            switch (linux.E.init(rc)) {
                .SUCCESS => written += rc,
                .INTR => {},
                else => |errno| return self.report(errno, .name),
            }
        }
    }

    fn receive_directory(self: *Unpacker, untrusted: wire.FileHeader) Stop!void {
        names.validatePath(self.name[0..self.name_len], self.names_flags()) catch {
            return self.report_code(code_directory_name_invalid, .name);
        };
        const place = try self.open_parent();
        defer place.close();
        // Created 0700 and left so until its closing header, so that its children can still be
        // written into a directory whose final mode is read-only (§3.7).
        const made = linux.mkdirat(place.fd, place.last, 0o700);
        switch (linux.E.init(made)) {
            .SUCCESS => {
                self.stats.dirs += 1;
                return;
            },
            .EXIST => {},
            else => |errno| return self.report(errno, .name),
        }
        // The closing header, or a directory that already existed: merge into it.
        const flags: linux.O = .{
            .ACCMODE = .RDONLY,
            .DIRECTORY = true,
            .NOFOLLOW = true,
            .CLOEXEC = true,
        };
        const rc = linux.openat(place.fd, place.last, flags, 0);
        if (linux.E.init(rc) != .SUCCESS) return self.report(linux.E.init(rc), .name);
        const fd: i32 = @intCast(rc);
        defer _ = linux.close(fd);
        try self.apply_mode_and_times(fd, untrusted);
    }

    fn receive_symlink(self: *Unpacker, untrusted: wire.FileHeader) Stop!void {
        if (untrusted.filelen > wire.target_bytes_max) return self.report(.NAMETOOLONG, .name);
        const filelen: u32 = @intCast(untrusted.filelen);
        const target_bytes = self.target[0..filelen];
        if (try self.read_stream(target_bytes) < filelen) return self.report_legal_eof(.name);
        self.target[filelen] = 0;
        self.target_len = @intCast(std.mem.indexOfScalar(u8, self.target[0 .. filelen + 1], 0).?);
        const name = self.name[0..self.name_len];
        const target = self.target[0..self.target_len];
        names.validateSymlink(name, target, self.names_flags()) catch |err| {
            return self.report(switch (err) {
                error.InvalidName => .ILSEQ,
                error.LinkEscapes => .NOLINK,
            }, .target);
        };
        self.say_name();
        const place = try self.open_parent();
        defer place.close();
        const rc = linux.symlinkat(self.target[0..self.target_len :0], place.fd, place.last);
        if (linux.E.init(rc) != .SUCCESS) return self.report(linux.E.init(rc), .name);
        // No mode or times for symlinks (§3.8).
        self.stats.symlinks += 1;
    }

    /// Mode `& 07777` and times, through the fd (fchmodat would follow a symlink). Nanoseconds
    /// above 999999999 would be UTIME_NOW/UTIME_OMIT: upstream exits without a result (§2.2).
    fn apply_mode_and_times(self: *Unpacker, fd: i32, untrusted: wire.FileHeader) Stop!void {
        if (untrusted.atime_nsec > wire.nsec_max or untrusted.mtime_nsec > wire.nsec_max) {
            diag.record(
                .INVAL,
                "Invalid nanoseconds value in the times of an entry ({d}, {d})",
                .{ untrusted.atime_nsec, untrusted.mtime_nsec },
            );
            return error.Fatal;
        }
        const chmod = linux.fchmod(fd, untrusted.mode & wire.mode_permissions);
        if (linux.E.init(chmod) != .SUCCESS) return self.report(linux.E.init(chmod), .name);
        const times = [2]linux.timespec{
            .{ .sec = untrusted.atime, .nsec = untrusted.atime_nsec },
            .{ .sec = untrusted.mtime, .nsec = untrusted.mtime_nsec },
        };
        const utimes = linux.futimens(fd, &times);
        if (linux.E.init(utimes) != .SUCCESS) return self.report(linux.E.init(utimes), .name);
    }

    fn say_name(self: *Unpacker) void {
        if (!self.flags.verbose) return;
        self.name[self.name_len] = '\n';
        defer self.name[self.name_len] = 0;
        write_all(2, self.name[0 .. self.name_len + 1]);
    }

    const Place = struct {
        /// The parent directory: `dir_fd`, or a directory below it that `close` closes.
        fd: i32,
        owned: bool,
        /// The last component, NUL-terminated (a suffix of `name`).
        last: [*:0]const u8,

        fn close(place: Place) void {
            if (place.owned) _ = linux.close(place.fd);
        }
    };

    /// Opens the current name's parent component by component from `dir_fd`, each with
    /// O_NOFOLLOW|O_DIRECTORY, afresh for every entry: a cached fd would follow a directory
    /// that the local user moved out of the target (upstream's bind mount forbids the move).
    fn open_parent(self: *Unpacker) Stop!Place {
        const name = self.name[0..self.name_len];
        const slash = std.mem.lastIndexOfScalar(u8, name, '/') orelse {
            return .{ .fd = self.dir_fd, .owned = false, .last = @ptrCast(&self.name[0]) };
        };
        assert(slash > 0 and slash + 1 < name.len); // validated: no empty component
        var fd = self.dir_fd;
        var start: usize = 0;
        while (start < slash) {
            const end = std.mem.indexOfScalarPos(u8, name, start, '/').?;
            assert(end > start and end <= slash);
            self.name[end] = 0;
            const flags: linux.O = .{
                .ACCMODE = .RDONLY,
                .DIRECTORY = true,
                .NOFOLLOW = true,
                .CLOEXEC = true,
            };
            const rc = linux.openat(fd, @ptrCast(&self.name[start]), flags, 0);
            self.name[end] = '/';
            if (fd != self.dir_fd) _ = linux.close(fd);
            if (linux.E.init(rc) != .SUCCESS) {
                self.component_start = @intCast(start);
                self.component_len = @intCast(end - start);
                return self.report(linux.E.init(rc), .component);
            }
            fd = @intCast(rc);
            start = end + 1;
        }
        assert(fd != self.dir_fd);
        return .{ .fd = fd, .owned = true, .last = @ptrCast(&self.name[slash + 1]) };
    }

    fn report(self: *Unpacker, errno: linux.E, last: Last) Stop {
        assert(errno != .SUCCESS);
        self.code = @intFromEnum(errno);
        self.last = last;
        return error.Report;
    }

    fn report_code(self: *Unpacker, code: u32, last: Last) Stop {
        assert(code != 0);
        self.code = code;
        self.last = last;
        return error.Report;
    }

    fn report_legal_eof(self: *Unpacker, last: Last) Stop {
        self.code = wire.legal_eof;
        self.last = last;
        return error.Report;
    }

    fn send_result(self: *Unpacker) void {
        var message: [wire.result_message_bytes_max]u8 = undefined;
        const last: ?[]const u8 = switch (self.last) {
            .none => null,
            .name => self.name[0..self.name_len],
            .component => self.name[self.component_start..][0..self.component_len],
            .target => self.target[0..self.target_len],
        };
        const len = wire.encode_result(&message, self.code, self.crc, last);
        write_all(self.out_fd, message[0..len]);
    }

    /// Fills `buffer` from the stream; fewer bytes only at EOF. The CRC takes the bytes only when
    /// all came, like upstream's read_all_with_crc (content goes through `copy_content`).
    fn read_stream(self: *Unpacker, buffer: []u8) Stop!usize {
        var got: usize = 0;
        while (got < buffer.len) {
            if (self.in_pos == self.in_len) {
                if (!try self.fill()) break;
            }
            const chunk = @min(buffer.len - got, self.in_len - self.in_pos);
            @memcpy(buffer[got..][0..chunk], self.in[self.in_pos..][0..chunk]);
            self.in_pos += chunk;
            got += chunk;
        }
        if (got == buffer.len) self.crc = wire.crc32(self.crc, buffer);
        return got;
    }

    /// One read into the empty buffer; false at EOF. A read error is reported as its errno.
    fn fill(self: *Unpacker) Stop!bool {
        assert(self.in_pos == self.in_len);
        self.in_pos = 0;
        self.in_len = 0;
        while (true) {
            const rc = linux.read(self.in_fd, self.in.ptr, self.in.len);
            switch (linux.E.init(rc)) {
                .SUCCESS => {
                    self.in_len = rc;
                    self.fills += 1;
                    return rc > 0;
                },
                .INTR => {},
                .AGAIN => {
                    var fds = [1]linux.pollfd{
                        .{ .fd = self.in_fd, .events = linux.POLL.IN, .revents = 0 },
                    };
                    _ = linux.poll(&fds, 1, -1);
                },
                .CONNRESET => return false,
                else => |errno| return self.report(errno, .name),
            }
        }
    }
};

/// Best effort (the result to a sender that went away, a verbose line).
fn write_all(fd: i32, bytes: []const u8) void {
    var written: usize = 0;
    while (written < bytes.len) {
        const rc = linux.write(fd, bytes[written..].ptr, bytes.len - written);
        switch (linux.E.init(rc)) {
            .SUCCESS => written += rc,
            .INTR => {},
            .AGAIN => {
                var fds = [1]linux.pollfd{.{ .fd = fd, .events = linux.POLL.OUT, .revents = 0 }};
                _ = linux.poll(&fds, 1, -1);
            },
            else => return,
        }
    }
}

fn same_inode(a: i32, b: i32) bool {
    var first: linux.Stat = undefined;
    var second: linux.Stat = undefined;
    if (linux.E.init(linux.fstat(a, &first)) != .SUCCESS) return false;
    if (linux.E.init(linux.fstat(b, &second)) != .SUCCESS) return false;
    return first.dev == second.dev and first.ino == second.ino;
}

/// `struct statfs` of x86_64 and aarch64 (every field a 64-bit word; `fsid` two ints).
const Statfs = extern struct {
    type: u64,
    bsize: u64,
    blocks: u64,
    bfree: u64,
    bavail: u64,
    files: u64,
    ffree: u64,
    fsid: u64,
    namelen: u64,
    frsize: u64,
    flags: u64,
    spare: [4]u64,
};

/// linkat of an O_TMPFILE file goes through /proc/self/fd/N (upstream opens /proc/<pid>/fd
/// before its chroot for the same purpose). The fd, or -1 without /proc.
fn open_proc_fd_dir() i32 {
    const flags: linux.O = .{
        .ACCMODE = .RDONLY,
        .DIRECTORY = true,
        .PATH = true,
        .CLOEXEC = true,
    };
    const rc = linux.openat(linux.AT.FDCWD, "/proc/self/fd", flags, 0);
    if (linux.E.init(rc) != .SUCCESS) return -1;
    return @intCast(rc);
}

/// The C ABI's view: the code reported (0, errno, LEGAL_EOF, (uint32)-84...) as its 32-bit
/// pattern, or -1 when the receiver stopped without a result (diag has the message).
pub fn unpack(in_fd: i32, out_fd: i32, dir_fd: i32, flags: Flags, stats: *Stats) i32 {
    return unpack_waiting(in_fd, out_fd, dir_fd, flags, 0, stats);
}

/// `unpack` with `--wait-for-space space_margin` (0: off).
pub fn unpack_waiting(
    in_fd: i32,
    out_fd: i32,
    dir_fd: i32,
    flags: Flags,
    space_margin: u64,
    stats: *Stats,
) i32 {
    return unpack_buffered(std.heap.page_allocator, in_bytes, .{
        .in_fd = in_fd,
        .out_fd = out_fd,
        .dir_fd = dir_fd,
        .flags = flags,
        .space_margin = space_margin,
    }, stats);
}

/// One unpack's fds and options, as `unpack_waiting` takes them.
pub const Job = struct { in_fd: i32, out_fd: i32, dir_fd: i32, flags: Flags, space_margin: u64 };

/// `unpack_waiting` with its buffer of `in_size` bytes from `allocator` (see `init_sized`).
pub fn unpack_buffered(
    allocator: std.mem.Allocator,
    in_size: usize,
    job: Job,
    stats: *Stats,
) i32 {
    stats.* = std.mem.zeroes(Stats);
    const unpacker = Unpacker.init_sized(
        allocator,
        in_size,
        job.in_fd,
        job.out_fd,
        job.dir_fd,
        job.flags,
        stats,
    ) catch return -1;
    defer unpacker.deinit();
    unpacker.space_margin = job.space_margin;
    const code = unpacker.run() catch return -1;
    // No reported code has all bits set (errno values, LEGAL_EOF, -84): -1 stays "no result".
    assert(code != std.math.maxInt(u32));
    return @bitCast(code);
}

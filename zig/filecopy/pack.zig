//! The qubes.Filecopy sender's stream engine (qfile-agent's hot loop; spec filecopy.md §2.3,
//! §2.7, §4): walks each command-line path from its parent directory, writes headers, names,
//! symlink targets and file contents to `out_fd` with a running CRC, polls `in_fd` for an early
//! result, and after the end marker reads and checks the receiver's result.
//!
//! Blocking, on the caller's thread; the progress callback (a bun:ffi JSCallback) is called on
//! that same thread, synchronously. Everything is allocated at the start of `pack` and freed at
//! its end; the fds `out_fd`/`in_fd` stay the caller's. SIGPIPE must be ignored by the process
//! (Bun does) so that a closed stream is a write error (EPIPE), which makes us read the result.
//!
//! Throughput: headers, names and small files are batched so that one write carries up to
//! `batch_bytes` of them, content read with reads of up to `out_bytes` (1 MiB) straight into the
//! output buffer; the CRC runs over each buffer once, just before it is written. Files of
//! `splice_min_bytes` and more are spliced from the page cache to `out_fd` instead (no copy
//! through our memory; the CRC reads them once with pread), see `send_spliced`.
const std = @import("std");
const assert = std.debug.assert;
const linux = std.os.linux;

const diag = @import("../diag.zig");
const wire = @import("wire.zig");

pub const Flags = packed struct(u32) {
    /// `--ignore-symlinks`: symlinks are neither sent nor followed.
    ignore_symlinks: bool = false,
    _pad: u31 = 0,
};

pub const Progress = *const fn (bytes: u64, entries: u64) callconv(.C) void;

/// What `pack` tells its caller beside its return code. src/native.ts reads it by offsets.
pub const Result = extern struct {
    remote_code: u32,
    local_crc: u32,
    remote_crc: u32,
    has_last_name: u32,
    /// File content sent (regular files only, as upstream's progress counts).
    bytes: u64,
    /// Entries sent: files, directories (once each) and symlinks.
    entries: u64,
    last_name_len: u32,
    /// The receiver's last name, sanitized for display and cut to this size.
    last_name: [last_name_bytes_max]u8,
};

pub const last_name_bytes_max = 256;

comptime {
    assert(@sizeOf(Result) == 296);
    assert(@offsetOf(Result, "bytes") == 16);
    assert(@offsetOf(Result, "entries") == 24);
    assert(@offsetOf(Result, "last_name_len") == 32);
    assert(@offsetOf(Result, "last_name") == 36);
}

/// Content reads and the largest write.
pub const out_bytes: usize = 1024 * 1024;
/// Between entries, buffered headers and small files are written once they reach this.
pub const batch_bytes: usize = 256 * 1024;
/// Room for one header and name beyond `out_bytes`, so an entry's start never splits a read.
const out_slack: usize = wire.header_bytes + wire.path_length_max;
/// Upstream polls for an early result from its progress callback every 15 MB (§2.7).
pub const poll_interval_bytes: u64 = 15_000_000;
/// The progress callback is called at most once per this much content (JS rate-limits further).
pub const progress_interval_bytes: u64 = 1024 * 1024;
const getdents_bytes: usize = 32 * 1024;
/// Regular files from this size on are spliced (`send_spliced`); smaller ones are batched.
pub const splice_min_bytes: u64 = 1024 * 1024;
/// One splice moves at most this much (also our pipe's size).
pub const splice_chunk_bytes: usize = 1024 * 1024;
/// The CRC's pread of a spliced chunk reads this much at a time (stays in the L2 cache).
pub const crc_buffer_bytes: usize = 128 * 1024;
const splice_f_move: usize = 1;
const splice_f_more: usize = 4;
const f_setpipe_sz: i32 = 1031;

comptime {
    assert(batch_bytes < out_bytes);
    assert(crc_buffer_bytes <= out_bytes and splice_chunk_bytes <= out_bytes);
    assert(out_slack >= wire.header_bytes + wire.name_bytes_max + 1);
}

/// How the run ended, mapped to the C ABI's return value by `status`.
pub const Outcome = enum {
    /// Result 0 with a matching CRC after the end marker.
    ok,
    /// The receiver sent a non-zero code.
    remote,
    /// Result 0 but the CRC differs.
    crc_mismatch,
    /// The receiver closed its side without a (complete) result.
    eof,
    /// The receiver claimed success before we had sent the end marker.
    premature_ok,
};

/// Stops the walk: `Fail` for a local error (diag holds errno and message), `Finished` once the
/// receiver's result (or its EOF) has been read.
const Stop = error{ Fail, Finished };

const Level = struct {
    fd: i32,
    /// Length of this directory's wire path in `Packer.path`.
    path_len: u32,
    /// The directory's header, sent again after its children (with the same stat, as upstream).
    header: wire.FileHeader,
    buffer: []u8,
    pos: usize = 0,
    len: usize = 0,
};

pub const Packer = struct {
    out_fd: i32,
    in_fd: i32,
    flags: Flags,
    progress: ?Progress,
    result: *Result,
    allocator: std.mem.Allocator,

    out: []u8,
    out_len: usize = 0,
    crc: u32 = 0,
    bytes: u64 = 0,
    entries: u64 = 0,
    bytes_reported: u64 = 0,
    bytes_polled: u64 = 0,
    outcome: Outcome = .ok,
    /// The receiver's whole CRC field (the result shows its low 32 bits).
    remote_crc: u64 = 0,

    /// The wire name of the current entry, NUL-terminated at `path_len`; the current entry's
    /// own component is its suffix, so it doubles as the `*at()` syscalls' argument.
    path: [wire.path_length_max + 1]u8 = undefined,
    path_len: u32 = 0,
    levels: std.ArrayListUnmanaged(Level) = .{},
    /// getdents buffers of popped levels, for reuse.
    spare: std.ArrayListUnmanaged([]u8) = .{},
    link_target: [wire.path_length_max]u8 = undefined,
    /// How large files reach `out_fd` (`send_spliced`): decided at the first one.
    splice: enum { unknown, direct, pipe, off } = .unknown,
    /// Our pipe between the file and `out_fd` when `splice` is `.pipe`.
    pipe: [2]i32 = .{ -1, -1 },

    pub fn init(
        allocator: std.mem.Allocator,
        out_fd: i32,
        in_fd: i32,
        flags: Flags,
        progress: ?Progress,
        result: *Result,
    ) diag.Fail!*Packer {
        const self = allocator.create(Packer) catch return diag.fail(.NOMEM, "out of memory", .{});
        errdefer allocator.destroy(self);
        const out = allocator.alloc(u8, out_bytes + out_slack) catch return diag.fail(
            .NOMEM,
            "out of memory",
            .{},
        );
        self.* = .{
            .out_fd = out_fd,
            .in_fd = in_fd,
            .flags = flags,
            .progress = progress,
            .result = result,
            .allocator = allocator,
            .out = out,
        };
        result.* = std.mem.zeroes(Result);
        return self;
    }

    pub fn deinit(self: *Packer) void {
        for (self.levels.items) |level| {
            _ = linux.close(level.fd);
            self.allocator.free(level.buffer);
        }
        self.levels.deinit(self.allocator);
        for (self.spare.items) |buffer| self.allocator.free(buffer);
        self.spare.deinit(self.allocator);
        if (self.pipe[0] >= 0) _ = linux.close(self.pipe[0]);
        if (self.pipe[1] >= 0) _ = linux.close(self.pipe[1]);
        self.allocator.free(self.out);
        const allocator = self.allocator;
        allocator.destroy(self);
    }

    /// The whole sender: every path of `paths` (NUL-terminated strings, concatenated), the end
    /// marker, the result. Returns how it ended; local errors are `Fail`.
    pub fn run(self: *Packer, paths: []const u8) diag.Fail!Outcome {
        defer self.fill_counters();
        self.send_all(paths) catch |err| switch (err) {
            error.Fail => return error.Fail,
            error.Finished => {
                assert(self.outcome != .ok);
                return self.outcome;
            },
        };
        return self.outcome;
    }

    fn fill_counters(self: *Packer) void {
        self.result.local_crc = self.crc;
        self.result.bytes = self.bytes;
        self.result.entries = self.entries;
    }

    fn send_all(self: *Packer, paths: []const u8) Stop!void {
        if (paths.len > 0 and paths[paths.len - 1] != 0) {
            return diag.fail(.INVAL, "the path list does not end with a NUL", .{});
        }
        var rest = paths;
        while (rest.len > 0) {
            const end = std.mem.indexOfScalar(u8, rest, 0).?;
            try self.send_argument(rest[0..end]);
            rest = rest[end + 1 ..];
        }
        var marker: [wire.header_bytes]u8 = undefined;
        wire.FileHeader.end_marker.encode(&marker);
        try self.append(&marker);
        try self.flush();
        self.report_progress();
        try self.read_result();
        assert(self.outcome == .ok);
        if (self.remote_crc != self.crc) {
            self.outcome = .crc_mismatch;
            diag.record(.BADMSG, "File transfer failed: checksum mismatch", .{});
        }
    }

    /// One command-line path: strip one trailing '/', open its dirname, walk its basename.
    fn send_argument(self: *Packer, argument: []const u8) Stop!void {
        if (argument.len == 0) return diag.fail(.INVAL, "Invalid empty argument", .{});
        var path = argument;
        if (path.len > 1 and path[path.len - 1] == '/') path = path[0 .. path.len - 1];
        const slash = std.mem.lastIndexOfScalar(u8, path, '/');
        const dir_name: []const u8 = if (slash) |at| (if (at == 0) "/" else path[0..at]) else ".";
        const base = if (slash) |at| path[at + 1 ..] else path;
        if (base.len == 0) return diag.fail(
            .INVAL,
            "Invalid argument {s}: no file name in it",
            .{argument},
        );
        if (base.len > wire.name_bytes_max - 1 or dir_name.len > wire.path_length_max) {
            return diag.fail(.NAMETOOLONG, "File name too long: {s}", .{argument});
        }

        // dirname: NUL-terminated in `path` for a moment (the walk then reuses the buffer).
        @memcpy(self.path[0..dir_name.len], dir_name);
        self.path[dir_name.len] = 0;
        // The user's own path up to here may go through symlinks (only the walk must not).
        const dir_fd = try open_directory(
            linux.AT.FDCWD,
            self.path[0..dir_name.len :0],
            .follow,
            "opendir {s}",
            dir_name,
        );
        defer _ = linux.close(dir_fd);

        assert(self.levels.items.len == 0);
        @memcpy(self.path[0..base.len], base);
        self.path_len = @intCast(base.len);
        self.path[self.path_len] = 0;
        try self.visit(dir_fd, 0);
        try self.walk();
    }

    /// Sends the entry named by `path[component_start..path_len]` in `dir_fd`; a directory's
    /// children follow through `walk` (it pushes a level).
    fn visit(self: *Packer, dir_fd: i32, component_start: u32) Stop!void {
        const name = self.path[0..self.path_len];
        const component: [*:0]const u8 = @ptrCast(&self.path[component_start]);
        var st: linux.Stat = undefined;
        _ = try check(
            linux.fstatat(dir_fd, component, &st, linux.AT.SYMLINK_NOFOLLOW),
            "stat {s}",
            name,
        );
        var header: wire.FileHeader = .{
            .namelen = self.path_len + 1,
            .mode = st.mode,
            .filelen = 0,
            // 32-bit seconds: truncated, as upstream does (§2.2).
            .atime = @truncate(@as(u64, @bitCast(@as(i64, st.atim.sec)))),
            .atime_nsec = @intCast(st.atim.nsec),
            .mtime = @truncate(@as(u64, @bitCast(@as(i64, st.mtim.sec)))),
            .mtime_nsec = @intCast(st.mtim.nsec),
        };
        switch (wire.kind_of(st.mode)) {
            .regular => {
                const fd = try open_file(dir_fd, component, name);
                defer _ = linux.close(fd);
                const size: u64 = @intCast(st.size);
                header.filelen = size;
                try self.append_header(header);
                self.entries += 1;
                try self.send_content(fd, size);
            },
            .symlink => {
                if (self.flags.ignore_symlinks) return;
                const rc = linux.readlinkat(
                    dir_fd,
                    component,
                    &self.link_target,
                    self.link_target.len,
                );
                const target_len = try check(rc, "readlink {s}", name);
                header.filelen = target_len;
                try self.append_header(header);
                try self.append(self.link_target[0..target_len]);
                self.entries += 1;
            },
            .directory => {
                try self.append_header(header);
                self.entries += 1;
                const fd = try open_directory(dir_fd, component, .no_follow, "opendir {s}", name);
                const buffer = if (self.spare.pop()) |reused| reused else self.allocator.alloc(
                    u8,
                    getdents_bytes,
                ) catch {
                    _ = linux.close(fd);
                    return diag.fail(.NOMEM, "out of memory", .{});
                };
                self.levels.append(
                    self.allocator,
                    .{ .fd = fd, .path_len = self.path_len, .header = header, .buffer = buffer },
                ) catch {
                    _ = linux.close(fd);
                    self.allocator.free(buffer);
                    return diag.fail(.NOMEM, "out of memory", .{});
                };
                // The children follow through `walk`.
            },
            // Fifos, sockets and devices: upstream sends nothing for them (§2.3).
            .other => return,
        }
        try self.entry_done();
    }

    /// Pre-order walk of the directories `visit` pushed, in readdir order; each directory's
    /// header is sent again after its children.
    fn walk(self: *Packer) Stop!void {
        while (self.levels.items.len > 0) {
            const level = &self.levels.items[self.levels.items.len - 1];
            if (level.pos == level.len) {
                const rc = linux.getdents64(level.fd, level.buffer.ptr, level.buffer.len);
                const count = try check(rc, "readdir {s}", self.path[0..level.path_len]);
                if (count == 0) {
                    try self.close_level();
                    continue;
                }
                level.pos = 0;
                level.len = count;
            }
            const entry: *align(1) const linux.dirent64 = @ptrCast(&level.buffer[level.pos]);
            const name_ptr: [*:0]const u8 = @ptrCast(
                &level.buffer[level.pos + @offsetOf(linux.dirent64, "name")],
            );
            level.pos += entry.reclen;
            assert(level.pos <= level.len);
            const child = std.mem.span(name_ptr);
            if (std.mem.eql(u8, child, ".") or std.mem.eql(u8, child, "..")) continue;

            const parent_len = level.path_len;
            if (parent_len + 1 + child.len > wire.name_bytes_max - 1) {
                return diag.fail(
                    .NAMETOOLONG,
                    "File name too long: {s}/{s}",
                    .{ self.path[0..parent_len], child },
                );
            }
            self.path[parent_len] = '/';
            @memcpy(self.path[parent_len + 1 ..][0..child.len], child);
            self.path_len = @intCast(parent_len + 1 + child.len);
            self.path[self.path_len] = 0;
            const dir_fd = level.fd; // `visit` may grow `levels` and move `level`.
            try self.visit(dir_fd, parent_len + 1);
        }
    }

    fn close_level(self: *Packer) Stop!void {
        const level = self.levels.pop().?;
        _ = linux.close(level.fd);
        self.spare.append(self.allocator, level.buffer) catch self.allocator.free(level.buffer);
        self.path_len = level.path_len;
        self.path[self.path_len] = 0;
        try self.append_header(level.header);
        try self.entry_done();
    }

    /// Header plus the current name (with its NUL).
    fn append_header(self: *Packer, header: wire.FileHeader) Stop!void {
        assert(header.namelen == self.path_len + 1);
        if (self.out_len + wire.header_bytes + header.namelen > self.out.len) try self.flush();
        header.encode(self.out[self.out_len..][0..wire.header_bytes]);
        self.out_len += wire.header_bytes;
        @memcpy(self.out[self.out_len..][0..header.namelen], self.path[0..header.namelen]);
        self.out_len += header.namelen;
    }

    fn append(self: *Packer, bytes: []const u8) Stop!void {
        if (self.out_len + bytes.len > self.out.len) try self.flush();
        assert(self.out_len + bytes.len <= self.out.len);
        @memcpy(self.out[self.out_len..][0..bytes.len], bytes);
        self.out_len += bytes.len;
    }

    /// Exactly `size` bytes of `fd`: large files spliced (`send_spliced`), the rest (and what a
    /// refused splice leaves) read straight into the output buffer.
    fn send_content(self: *Packer, fd: i32, size: u64) Stop!void {
        var offset: u64 = 0;
        if (size >= splice_min_bytes and self.splice != .off) {
            offset = try self.send_spliced(fd, size);
        }
        try self.send_copied(fd, size - offset);
    }

    fn send_copied(self: *Packer, fd: i32, size: u64) Stop!void {
        var remaining = size;
        while (remaining > 0) {
            if (self.out_len >= out_bytes) try self.flush();
            const room = out_bytes - self.out_len;
            const want: usize = @intCast(@min(remaining, room));
            const rc = linux.read(fd, self.out[self.out_len..].ptr, want);
            switch (linux.E.init(rc)) {
                .SUCCESS => {},
                .INTR => continue,
                else => |errno| return diag.fail(
                    errno,
                    "Copying file {s}: Error reading",
                    .{self.path[0..self.path_len]},
                ),
            }
            if (rc == 0) {
                return diag.fail(
                    .IO,
                    "Copying file {s}: Unexpected end of data while reading",
                    .{self.path[0..self.path_len]},
                );
            }
            self.out_len += rc;
            remaining -= rc;
            self.bytes += rc;
            if (self.bytes - self.bytes_reported >= progress_interval_bytes) self.report_progress();
            if (self.bytes - self.bytes_polled >= poll_interval_bytes) {
                self.bytes_polled = self.bytes;
                try self.poll_result();
            }
        }
    }

    /// A large file goes from the page cache to `out_fd` without passing through our memory:
    /// splice(2) file -> pipe -> `out_fd` (the kernel moves page references; into an AF_UNIX
    /// socket too). The CRC still covers every byte sent: each chunk, once in the pipe, is read
    /// again with pread into a small buffer (hot in the cache for the CRC). If the file changes
    /// under us, what is sent and what is summed may differ: the receiver's CRC then disagrees
    /// and the transfer fails, as it must. Returns the bytes sent this way; fewer than `size`
    /// only when `out_fd` refuses splice (then never again in this run, the caller copies the
    /// rest from the file's current offset).
    fn send_spliced(self: *Packer, fd: i32, size: u64) Stop!u64 {
        try self.flush();
        if (self.splice == .unknown) self.splice_setup();
        if (self.splice == .off) return 0;
        var offset: u64 = 0;
        while (offset < size) {
            const want: usize = @intCast(@min(size - offset, splice_chunk_bytes));
            var file_offset: i64 = @intCast(offset);
            const into: i32 = if (self.splice == .direct) self.out_fd else self.pipe[1];
            const moved = splice_call(fd, &file_offset, into, null, want);
            switch (linux.E.init(moved)) {
                .SUCCESS => {},
                .INTR => continue,
                .AGAIN => {
                    wait_fd(into, linux.POLL.OUT);
                    continue;
                },
                .PIPE => if (self.splice == .direct) {
                    try self.read_result();
                    return self.premature();
                } else return diag.fail(
                    .PIPE,
                    "Copying file {s}: splice",
                    .{self.path[0..self.path_len]},
                ),
                // Not a file splice can read, or an output it cannot write: copy from here on.
                .INVAL, .OPNOTSUPP, .NOSYS, .BADF => {
                    self.splice = .off;
                    return self.seek_to(fd, offset);
                },
                else => |errno| return diag.fail(
                    errno,
                    "Copying file {s}: Error reading",
                    .{self.path[0..self.path_len]},
                ),
            }
            if (moved == 0) return diag.fail(
                .IO,
                "Copying file {s}: Unexpected end of data while reading",
                .{self.path[0..self.path_len]},
            );
            // The same bytes again, for the CRC; a file cut short meanwhile is cut short here.
            try self.crc_range(fd, offset, moved);
            if (self.splice == .pipe) {
                if (!try self.drain_pipe(moved)) {
                    // `out_fd` takes no splice: the pipe's bytes go out by write, the rest too.
                    self.splice = .off;
                    offset += moved;
                    self.bytes += moved;
                    return self.seek_to(fd, offset);
                }
            }
            offset += moved;
            self.bytes += moved;
            if (self.bytes - self.bytes_reported >= progress_interval_bytes) self.report_progress();
            if (self.bytes - self.bytes_polled >= poll_interval_bytes) {
                self.bytes_polled = self.bytes;
                try self.poll_result();
            }
        }
        return offset;
    }

    /// Decides once per run how content reaches `out_fd` by splice: straight in when it is a
    /// pipe, through our own pipe otherwise (a socket, a file); `off` without a pipe.
    fn splice_setup(self: *Packer) void {
        var st: linux.Stat = undefined;
        const stat_ok = linux.E.init(linux.fstat(self.out_fd, &st)) == .SUCCESS;
        if (stat_ok and st.mode & linux.S.IFMT == linux.S.IFIFO) {
            self.splice = .direct;
            return;
        }
        if (linux.E.init(linux.pipe2(&self.pipe, .{ .CLOEXEC = true })) != .SUCCESS) {
            self.splice = .off;
            return;
        }
        // Room for a whole chunk, so that one splice in is one splice out (best effort).
        _ = linux.fcntl(self.pipe[1], f_setpipe_sz, splice_chunk_bytes);
        self.splice = .pipe;
    }

    /// Moves `count` bytes from our pipe to `out_fd`. False when `out_fd` refuses splice before
    /// any byte went: they are then written from `out` (after a read from the pipe).
    fn drain_pipe(self: *Packer, count: usize) Stop!bool {
        var left = count;
        while (left > 0) {
            const rc = splice_call(self.pipe[0], null, self.out_fd, null, left);
            switch (linux.E.init(rc)) {
                .SUCCESS => left -= rc,
                .INTR => {},
                .AGAIN => wait_fd(self.out_fd, linux.POLL.OUT),
                .PIPE, .CONNRESET => {
                    // The receiver stopped reading: its result says why (§2.7).
                    try self.read_result();
                    return self.premature();
                },
                .INVAL, .OPNOTSUPP, .NOSYS, .BADF => {
                    if (left != count) return diag.fail(
                        .IO,
                        "Writing the stream: splice stopped",
                        .{},
                    );
                    // The bytes are summed already (`crc_range`): write them without the CRC.
                    assert(self.out_len == 0 and count <= self.out.len);
                    var got: usize = 0;
                    while (got < count) {
                        const read = linux.read(self.pipe[0], self.out[got..].ptr, count - got);
                        switch (linux.E.init(read)) {
                            .SUCCESS => got += read,
                            .INTR => {},
                            else => |errno| return diag.fail(errno, "Reading back our pipe", .{}),
                        }
                    }
                    try self.write_out(self.out[0..count]);
                    return false;
                },
                else => |errno| return diag.fail(errno, "Writing the stream", .{}),
            }
        }
        return true;
    }

    /// The CRC of `count` bytes of `fd` at `offset`, read through `crc_buffer`.
    fn crc_range(self: *Packer, fd: i32, offset: u64, count: usize) Stop!void {
        var done: usize = 0;
        while (done < count) {
            const piece = @min(count - done, crc_buffer_bytes);
            const rc = linux.pread(fd, self.out.ptr, piece, @intCast(offset + done));
            switch (linux.E.init(rc)) {
                .SUCCESS => {},
                .INTR => continue,
                else => |errno| return diag.fail(
                    errno,
                    "Copying file {s}: Error reading",
                    .{self.path[0..self.path_len]},
                ),
            }
            if (rc == 0) return diag.fail(
                .IO,
                "Copying file {s}: Unexpected end of data while reading",
                .{self.path[0..self.path_len]},
            );
            self.crc = wire.crc32(self.crc, self.out[0..rc]);
            done += rc;
        }
    }

    /// The copy path continues where splice stopped (splice with an offset leaves the file's
    /// own offset at 0).
    fn seek_to(self: *Packer, fd: i32, offset: u64) Stop!u64 {
        const rc = linux.lseek(fd, @intCast(offset), linux.SEEK.SET);
        if (linux.E.init(rc) != .SUCCESS) return diag.fail(
            linux.E.init(rc),
            "Copying file {s}: Error reading",
            .{self.path[0..self.path_len]},
        );
        return offset;
    }

    /// `send_content` and a flush: the stream so far is then all in `out_fd`.
    pub fn send_content_for_test(self: *Packer, fd: i32, size: u64) Stop!void {
        try self.send_content(fd, size);
        try self.flush();
    }

    /// After each entry: batch small entries, report progress, look for an early result.
    fn entry_done(self: *Packer) Stop!void {
        if (self.out_len >= batch_bytes) try self.flush();
        if (self.bytes - self.bytes_reported >= progress_interval_bytes) self.report_progress();
        try self.poll_result();
    }

    fn report_progress(self: *Packer) void {
        self.bytes_reported = self.bytes;
        if (self.progress) |callback| callback(self.bytes, self.entries);
    }

    /// Writes the buffer, CRC first. A closed stream makes us read the receiver's reason.
    fn flush(self: *Packer) Stop!void {
        if (self.out_len == 0) return;
        self.crc = wire.crc32(self.crc, self.out[0..self.out_len]);
        const len = self.out_len;
        self.out_len = 0;
        try self.write_out(self.out[0..len]);
    }

    fn write_out(self: *Packer, bytes: []const u8) Stop!void {
        var written: usize = 0;
        while (written < bytes.len) {
            const rc = linux.write(self.out_fd, bytes[written..].ptr, bytes.len - written);
            switch (linux.E.init(rc)) {
                .SUCCESS => written += rc,
                .INTR => {},
                .AGAIN => wait_fd(self.out_fd, linux.POLL.OUT),
                .PIPE, .CONNRESET => {
                    // The receiver stopped reading: its result says why (§2.7).
                    try self.read_result();
                    return self.premature();
                },
                else => |errno| return diag.fail(errno, "Writing the stream", .{}),
            }
        }
    }

    /// A non-blocking look at `in_fd`: anything there (or its EOF) is the receiver's result.
    fn poll_result(self: *Packer) Stop!void {
        var fds = [1]linux.pollfd{.{ .fd = self.in_fd, .events = linux.POLL.IN, .revents = 0 }};
        const rc = linux.poll(&fds, 1, 0);
        if (linux.E.init(rc) != .SUCCESS or rc == 0) return;
        if (fds[0].revents & (linux.POLL.IN | linux.POLL.HUP | linux.POLL.ERR) == 0) return;
        try self.read_result();
        return self.premature();
    }

    /// A success result before our end marker: not something a receiver sends.
    fn premature(self: *Packer) Stop {
        self.outcome = .premature_ok;
        diag.record(
            .PROTO,
            "the receiver reported success before the end of the transfer",
            .{},
        );
        return error.Finished;
    }

    /// Reads the 16-byte result and its optional extension. Returns for a success result (the
    /// caller decides what it means); `Finished` for an error code or EOF, `Fail` for a local
    /// read error.
    fn read_result(self: *Packer) Stop!void {
        var header: [wire.result_bytes]u8 = undefined;
        const got = try self.read_in(&header);
        if (got < header.len) {
            self.outcome = .eof;
            diag.record(.PIPE, "EOF instead of the receiver's result", .{});
            return error.Finished;
        }
        const decoded = wire.ResultHeader.decode(&header);
        self.result.remote_code = decoded.error_code;
        self.remote_crc = decoded.crc;
        self.result.remote_crc = @truncate(decoded.crc);

        var ext: [wire.result_ext_bytes]u8 = undefined;
        if (try self.read_in(&ext) == ext.len) {
            const declared = std.mem.readInt(u32, &ext, .little);
            const len = @min(declared, wire.path_length_max);
            // `link_target` is free here: the walk has stopped.
            const name = self.link_target[0..len];
            if (try self.read_in(name) == len) {
                const shown = name[0..@min(len, last_name_bytes_max)];
                wire.sanitize_for_display(shown);
                @memcpy(self.result.last_name[0..shown.len], shown);
                self.result.last_name_len = @intCast(shown.len);
                self.result.has_last_name = 1;
            }
        }
        if (decoded.error_code != 0) {
            self.outcome = .remote;
            diag.record(.REMOTEIO, "the receiver reported error {d}", .{decoded.error_code});
            return error.Finished;
        }
    }

    /// Fills `buffer` from `in_fd`, blocking (also when the fd is non-blocking); returns the bytes
    /// read, fewer only at EOF.
    fn read_in(self: *Packer, buffer: []u8) diag.Fail!usize {
        var got: usize = 0;
        while (got < buffer.len) {
            const rc = linux.read(self.in_fd, buffer[got..].ptr, buffer.len - got);
            switch (linux.E.init(rc)) {
                .SUCCESS => {
                    if (rc == 0) break;
                    got += rc;
                },
                .INTR => {},
                .AGAIN => wait_fd(self.in_fd, linux.POLL.IN),
                .CONNRESET => break,
                else => |errno| return diag.fail(errno, "Reading the result", .{}),
            }
        }
        return got;
    }
};

fn splice_call(fd_in: i32, off_in: ?*i64, fd_out: i32, off_out: ?*i64, len: usize) usize {
    return linux.syscall6(
        .splice,
        @as(usize, @bitCast(@as(isize, fd_in))),
        @intFromPtr(off_in),
        @as(usize, @bitCast(@as(isize, fd_out))),
        @intFromPtr(off_out),
        len,
        splice_f_move | splice_f_more,
    );
}

fn wait_fd(fd: i32, events: i16) void {
    var fds = [1]linux.pollfd{.{ .fd = fd, .events = events, .revents = 0 }};
    _ = linux.poll(&fds, 1, -1);
}

/// A syscall's result, or `Fail` with upstream's words for the failure (errno separately).
fn check(rc: usize, comptime fmt: []const u8, name: []const u8) diag.Fail!usize {
    const errno = linux.E.init(rc);
    if (errno != .SUCCESS) return diag.fail(errno, fmt, .{name});
    return rc;
}

fn open_directory(
    dir_fd: i32,
    path: [*:0]const u8,
    links: enum { follow, no_follow },
    comptime fmt: []const u8,
    name: []const u8,
) diag.Fail!i32 {
    const flags: linux.O = .{
        .ACCMODE = .RDONLY,
        .DIRECTORY = true,
        .NOFOLLOW = links == .no_follow,
        .CLOEXEC = true,
    };
    while (true) {
        const rc = linux.openat(dir_fd, path, flags, 0);
        if (linux.E.init(rc) == .INTR) continue;
        return @intCast(try check(rc, fmt, name));
    }
}

fn open_file(dir_fd: i32, path: [*:0]const u8, name: []const u8) diag.Fail!i32 {
    const flags: linux.O = .{
        .ACCMODE = .RDONLY,
        .NOFOLLOW = true,
        .CLOEXEC = true,
        .NOCTTY = true,
    };
    while (true) {
        const rc = linux.openat(dir_fd, path, flags, 0);
        if (linux.E.init(rc) == .INTR) continue;
        return @intCast(try check(rc, "open {s}", name));
    }
}

/// The C ABI's view of a run: 0, a positive remote code (capped at i32 max; the exact value is
/// in `result.remote_code`), or -errno with a message in diag.
pub fn pack(
    out_fd: i32,
    in_fd: i32,
    paths: []const u8,
    flags: Flags,
    progress: ?Progress,
    result: *Result,
) i32 {
    const packer = Packer.init(
        std.heap.page_allocator,
        out_fd,
        in_fd,
        flags,
        progress,
        result,
    ) catch return -diag.errno();
    defer packer.deinit();
    const outcome = packer.run(paths) catch return -diag.errno();
    return switch (outcome) {
        .ok => 0,
        .remote => remote_status(result.remote_code),
        // diag holds the errno (EBADMSG, EPIPE, EPROTO) and the message.
        .crc_mismatch, .eof, .premature_ok => -diag.errno(),
    };
}

fn remote_status(code: u32) i32 {
    assert(code != 0);
    return @intCast(@min(code, std.math.maxInt(i32)));
}

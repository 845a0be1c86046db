//! The receiver's filesystem identity: upstream's qfile-unpacker calls `setfsuid(user)` and then
//! `setuid(user)`, so every mkdir, open and chmod it makes is checked against the receiving
//! user's permission bits, and a stream that makes a directory 0000 cannot write into it
//! (EACCES, spec filecopy.md §3.2). We never change users, but a receiver running as root would
//! bypass those checks with the capabilities `setfsuid` clears; `drop` clears the same ones from
//! the calling thread's effective set for the length of an unpack, `restore` puts them back.
//!
//! Capabilities are per thread (capset(2) on the caller only), so other threads of the process
//! keep theirs. Raw syscalls: std's `cap_user_header_t` has a pointer-sized pid (the kernel's
//! is an int) and its capget writes two data structs into a pointer to one.
const std = @import("std");
const assert = std.debug.assert;
const linux = std.os.linux;

/// What `setfsuid` to a non-zero id clears (capabilities(7), "Effect of user ID changes").
const fs_caps = [_]u8{
    linux.CAP.CHOWN,
    linux.CAP.DAC_OVERRIDE,
    linux.CAP.DAC_READ_SEARCH,
    linux.CAP.FOWNER,
    linux.CAP.FSETID,
    linux.CAP.LINUX_IMMUTABLE,
    linux.CAP.MKNOD,
    linux.CAP.MAC_OVERRIDE,
};

const version_3: u32 = 0x20080522;

const Header = extern struct { version: u32, pid: i32 };
const Data = extern struct { effective: u32, permitted: u32, inheritable: u32 };

comptime {
    assert(@sizeOf(Header) == 8);
    assert(@sizeOf(Data) == 12);
}

/// The thread's capabilities before `drop`; `restore` needs it.
pub const Saved = struct {
    data: [2]Data,
    changed: bool,
};

/// Best effort: where capget fails (seccomp, an old kernel) there is nothing to drop.
pub fn drop() Saved {
    var saved: Saved = .{ .data = std.mem.zeroes([2]Data), .changed = false };
    var header: Header = .{ .version = version_3, .pid = 0 };
    const got = linux.syscall2(.capget, @intFromPtr(&header), @intFromPtr(&saved.data));
    if (linux.E.init(got) != .SUCCESS) return saved;
    var lowered = saved.data;
    for (fs_caps) |cap| lowered[cap >> 5].effective &= ~(@as(u32, 1) << @intCast(cap & 31));
    if (std.mem.eql(u8, std.mem.asBytes(&lowered), std.mem.asBytes(&saved.data))) return saved;
    header = .{ .version = version_3, .pid = 0 };
    const rc = linux.syscall2(.capset, @intFromPtr(&header), @intFromPtr(&lowered));
    saved.changed = linux.E.init(rc) == .SUCCESS;
    return saved;
}

pub fn restore(saved: Saved) void {
    if (!saved.changed) return;
    var header: Header = .{ .version = version_3, .pid = 0 };
    // Raising effective bits that are still permitted cannot fail.
    const rc = linux.syscall2(.capset, @intFromPtr(&header), @intFromPtr(&saved.data));
    assert(linux.E.init(rc) == .SUCCESS);
}

//! Validation of the names and symlink targets that a qubes.Filecopy receiver is sent
//! (spec filecopy.md §3.4 and §3.5; upstream `qubes_pure_validate_file_name_v2`,
//! `qubes_pure_validate_symbolic_link_v2` and `qubes_pure_string_safe_for_display` in
//! qubes-linux-utils qrexec-lib/unicode.c).
//!
//! Pure functions: no I/O, no allocation. Every loop is bounded by the length of its input.
//! The receiver must not trust anything it is sent, so every byte is checked; the chroot is a
//! second line of defence, not the first.
const std = @import("std");
const assert = std.debug.assert;

const unicode_allowlist = @import("unicode_allowlist.zig");

pub const Flags = packed struct(u32) {
    /// The `allow-all-names` service argument (`qfile-unpacker --allow-all-names`): skip the
    /// character rules. The path-structure rules still apply.
    allow_all_names: bool = false,
    /// Must be zero; callers that take flags from outside check this before converting.
    _pad: u31 = 0,
};

/// `InvalidName` travels on the wire as EILSEQ (84).
pub const NameError = error{InvalidName};

/// `InvalidName` travels on the wire as EILSEQ (84), `LinkEscapes` as ENOLINK (67).
pub const LinkError = error{ InvalidName, LinkEscapes };

/// Wire codes of the errors above (spec §2.6, Linux x86_64 errno values).
pub const errno_invalid_name: i32 = 84; // EILSEQ
pub const errno_link_escapes: i32 = 67; // ENOLINK

comptime {
    assert(errno_invalid_name == @intFromEnum(std.os.linux.E.ILSEQ));
    assert(errno_link_escapes == @intFromEnum(std.os.linux.E.NOLINK));
}

/// The errno that the receiver sends for `err`.
pub fn errnoOf(err: LinkError) i32 {
    return switch (err) {
        error.InvalidName => errno_invalid_name,
        error.LinkEscapes => errno_link_escapes,
    };
}

/// A regular-file or directory name from the wire (relative path, NUL already stripped).
pub fn validatePath(name: []const u8, flags: Flags) NameError!void {
    const depth = try pathDepth(name, flags);
    assert(depth >= 1);
}

/// A symlink: its own name (must pass validatePath and have >= 2 components, else LinkEscapes
/// for the one-component case) and its target (relative, `..` rules by depth, non-canonical
/// targets allowed, charset rules unless allow_all_names).
pub fn validateSymlink(name: []const u8, target: []const u8, flags: Flags) LinkError!void {
    const depth = try pathDepth(name, flags);
    assert(depth >= 1);
    // A top-level symlink would point outside the copied tree as soon as the user moves the
    // tree, whatever its target, so only links inside a copied directory are accepted.
    if (depth < 2) return error.LinkEscapes;
    try validateTarget(target, depth, flags);
}

/// Strict "safe for display" check used by the sender's pre-flight (qubes-fs-tree-check exit
/// 2): charset rules of a single name/target string. `/` is printable ASCII, so a whole path
/// may be passed; the empty string is safe.
pub fn isSafeForDisplay(text: []const u8) bool {
    return isTextAllowed(text);
}

/// Whether one Unicode scalar value may appear in a name under the character rules.
pub fn isCodePointAllowed(code_point: u21) bool {
    // Printable ASCII, space included; C0 controls and DEL are not.
    if (code_point < 0x80) return code_point >= 0x20 and code_point != 0x7F;
    return isInAllowlist(code_point);
}

/// Checks the path-structure rules (and the character rules unless `allow_all_names`) and
/// returns the number of components, at least 1.
fn pathDepth(name: []const u8, flags: Flags) NameError!u32 {
    assert(flags._pad == 0);
    // These three are implied by the component loop below (they all produce an empty
    // component) but are spelled out because they are the common cases.
    if (name.len == 0) return error.InvalidName;
    if (name[0] == '/') return error.InvalidName;
    if (name[name.len - 1] == '/') return error.InvalidName;

    var depth: u32 = 0;
    var components = std.mem.splitScalar(u8, name, '/');
    while (components.next()) |component| {
        if (component.len == 0) return error.InvalidName;
        if (isDot(component)) return error.InvalidName;
        if (isDotDot(component)) return error.InvalidName;
        try validateCharset(component, flags);
        depth += 1;
    }
    // Every component is a normal one, so "at least one normal component" holds.
    assert(depth >= 1);
    assert(depth <= name.len);
    return depth;
}

/// The target of a symlink whose name has `depth` components. The link lives in a directory
/// `depth - 1` levels below the top of the copied tree, and the top-level entry itself must
/// stay inside, so the target may climb at most `depth - 2` levels, and only at its start (a
/// `..` after a normal component could climb through a symlink). Empty components and `.`
/// are allowed (non-canonical targets such as busybox's `./busybox`), as is a trailing `/`.
fn validateTarget(target: []const u8, depth: u32, flags: Flags) LinkError!void {
    assert(depth >= 2);
    assert(flags._pad == 0);
    if (target.len > 0 and target[0] == '/') return error.LinkEscapes;

    const dotdot_max: u32 = depth - 2;
    var dotdot_count: u32 = 0;
    var normal_seen = false;
    var components = std.mem.splitScalar(u8, target, '/');
    while (components.next()) |component| {
        if (component.len == 0) continue;
        if (isDot(component)) continue;
        if (isDotDot(component)) {
            if (normal_seen) return error.LinkEscapes;
            if (dotdot_count == dotdot_max) return error.LinkEscapes;
            dotdot_count += 1;
            continue;
        }
        // Errors are reported in the order of the bytes, as upstream's single scan does: a
        // forbidden character before an escaping `..` is an EILSEQ, after it an ENOLINK.
        try validateCharset(component, flags);
        normal_seen = true;
    }
    assert(dotdot_count <= dotdot_max);
}

/// The character rules for one component (which contains no `/`).
fn validateCharset(component: []const u8, flags: Flags) NameError!void {
    assert(component.len > 0);
    assert(std.mem.indexOfScalar(u8, component, '/') == null);
    if (flags.allow_all_names) {
        // Any byte but NUL, which a C receiver could never see inside a name.
        if (std.mem.indexOfScalar(u8, component, 0) != null) return error.InvalidName;
    } else {
        if (!isTextAllowed(component)) return error.InvalidName;
    }
}

fn isDot(component: []const u8) bool {
    return component.len == 1 and component[0] == '.';
}

fn isDotDot(component: []const u8) bool {
    return component.len == 2 and component[0] == '.' and component[1] == '.';
}

/// Whether `text` is well-formed UTF-8 made only of allowed code points.
fn isTextAllowed(text: []const u8) bool {
    var index: usize = 0;
    while (index < text.len) {
        // Fast path: printable ASCII needs no decoding.
        if (text[index] >= 0x20 and text[index] < 0x7F) {
            index += 1;
            continue;
        }
        const decoded = decodeUtf8(text[index..]) orelse return false;
        if (!isCodePointAllowed(decoded.code_point)) return false;
        index += decoded.length;
    }
    assert(index == text.len);
    return true;
}

pub const Decoded = struct { code_point: u21, length: u3 };

/// Decodes the UTF-8 sequence at the start of `bytes` if it is well-formed (Unicode §3.9,
/// table 3-7): no overlong forms, no surrogates, nothing above U+10FFFF, no truncation.
/// Returns null otherwise. std.unicode checks exactly these rules.
pub fn decodeUtf8(bytes: []const u8) ?Decoded {
    assert(bytes.len > 0);
    const length = std.unicode.utf8ByteSequenceLength(bytes[0]) catch return null;
    if (bytes.len < length) return null;
    const code_point = std.unicode.utf8Decode(bytes[0..length]) catch return null;
    assert(code_point <= 0x10FFFF);
    assert(code_point < 0xD800 or code_point > 0xDFFF);
    return .{ .code_point = code_point, .length = length };
}

/// Binary search in the generated table of non-ASCII code points.
fn isInAllowlist(code_point: u21) bool {
    assert(code_point >= 0x80);
    const ranges = &unicode_allowlist.ranges;
    // Find the first range whose end is not below `code_point`.
    var low: usize = 0;
    var high: usize = ranges.len;
    while (low < high) {
        const middle = low + (high - low) / 2;
        if (ranges[middle][1] < code_point) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    assert(low <= ranges.len);
    if (low == ranges.len) return false;
    assert(ranges[low][1] >= code_point);
    return ranges[low][0] <= code_point;
}

comptime {
    // The binary search relies on the generated table being sorted and disjoint; it must also
    // stay clear of ASCII (handled above) and of the surrogates (never decoded).
    const ranges = &unicode_allowlist.ranges;
    @setEvalBranchQuota(ranges.len * 16);
    assert(ranges.len > 0);
    assert(ranges[0][0] >= 0x80);
    assert(ranges[ranges.len - 1][1] <= 0x10FFFF);
    for (ranges, 0..) |range, index| {
        assert(range[0] <= range[1]);
        assert(range[1] < 0xD800 or range[0] > 0xDFFF);
        if (index > 0) assert(ranges[index - 1][1] + 1 < range[0]);
    }
}

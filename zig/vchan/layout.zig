//! Where the two rings of a vchan live, chosen exactly as libxenvchan chooses (vchan.md §2.2),
//! and the checks a client applies to a layout offered by an untrusted server.
//!
//! "left" is the ring the client writes and the server reads; "right" the other way.
//! Orders 10 and 11 sit inside page 0 (at offsets 1024 and 2048); orders 12..20 are separate
//! pages that follow page 0 in the memfd, left's pages first. Where Xen keeps grant refs in
//! page 0 we keep 1-based page indices into the memfd.
const std = @import("std");
const constants = @import("../constants.zig");
const assert = std.debug.assert;

const page_bytes = constants.page_bytes;

pub const Layout = struct {
    left_order: u5,
    right_order: u5,

    pub fn ring_bytes(order: u5) u32 {
        return @as(u32, 1) << order;
    }

    pub fn left_bytes(self: Layout) u32 {
        return ring_bytes(self.left_order);
    }

    pub fn right_bytes(self: Layout) u32 {
        return ring_bytes(self.right_order);
    }

    fn external_pages(order: u5) u32 {
        return if (order >= 12) ring_bytes(order) / page_bytes else 0;
    }

    pub fn left_pages(self: Layout) u32 {
        return external_pages(self.left_order);
    }

    pub fn right_pages(self: Layout) u32 {
        return external_pages(self.right_order);
    }

    /// Pages a Xen peer would have to grant: page 0 plus every external ring page.
    pub fn pages(self: Layout) u32 {
        return 1 + self.left_pages() + self.right_pages();
    }

    pub fn grants(self: Layout) u32 {
        return self.left_pages() + self.right_pages();
    }

    pub fn total_bytes(self: Layout) u32 {
        return self.pages() * page_bytes;
    }

    fn offset_of(self: Layout, order: u5, is_left: bool) u32 {
        return switch (order) {
            10 => 1024,
            11 => 2048,
            else => if (is_left) page_bytes else page_bytes + self.left_pages() * page_bytes,
        };
    }

    pub fn left_offset(self: Layout) u32 {
        return self.offset_of(self.left_order, true);
    }

    pub fn right_offset(self: Layout) u32 {
        return self.offset_of(self.right_order, false);
    }

    /// The expected contents of `grants[i]`: left's pages, then right's, 1-based page indices.
    pub fn grant(self: Layout, index: u32) u32 {
        assert(index < self.grants());
        return 1 + index;
    }
};

pub const SelectError = error{ RingTooLarge, PageCapExceeded };

/// libxenvchan's `min_order`: at least a page, otherwise the next power of two.
fn min_order(bytes: u32) u5 {
    if (bytes <= page_bytes) return 12;
    return @intCast(std.math.log2_int_ceil(u32, bytes));
}

/// The server's choice for (read_min, write_min); read is "left", write is "right".
pub fn select(read_min: u32, write_min: u32) SelectError!Layout {
    if (read_min > constants.ring_bytes_max or write_min > constants.ring_bytes_max) {
        return error.RingTooLarge;
    }
    var layout = Layout{ .left_order = min_order(read_min), .right_order = min_order(write_min) };
    // "If we can avoid allocating extra pages by using in-page rings, do so."
    if (read_min <= 1024 and write_min <= 2048) {
        layout = .{ .left_order = 10, .right_order = 11 };
    } else if (read_min <= 2048 and write_min <= 1024) {
        layout = .{ .left_order = 11, .right_order = 10 };
    } else if (read_min <= 2048) {
        layout.left_order = 11;
    } else if (write_min <= 2048) {
        layout.right_order = 11;
    }
    assert(validate(layout.left_order, layout.right_order) != null);
    return layout;
}

/// The server's choice, refused when it needs more pages than `pages_max` (0 = no cap).
pub fn select_capped(read_min: u32, write_min: u32, pages_max: u32) SelectError!Layout {
    const layout = try select(read_min, write_min);
    if (pages_max != 0 and layout.pages() > pages_max) return error.PageCapExceeded;
    return layout;
}

/// The largest power-of-two size that, asked for in both directions, fits `pages_max`.
/// Used to tell the user which size would have worked.
pub fn largest_symmetric_fit(pages_max: u32) ?u32 {
    var bytes: u32 = constants.ring_bytes_max;
    while (bytes >= 1024) : (bytes /= 2) {
        const layout = select(bytes, bytes) catch unreachable;
        if (pages_max == 0 or layout.pages() <= pages_max) return bytes;
    }
    return null;
}

/// A layout offered by a server, or null when no honest libxenvchan or ocaml-vchan server
/// could have produced it. Orders are untrusted input here.
pub fn validate(untrusted_left_order: u32, untrusted_right_order: u32) ?Layout {
    const min = constants.ring_order_min;
    const max = constants.ring_order_max;
    if (untrusted_left_order < min or untrusted_left_order > max) return null;
    if (untrusted_right_order < min or untrusted_right_order > max) return null;
    const layout = Layout{
        .left_order = @intCast(untrusted_left_order),
        .right_order = @intCast(untrusted_right_order),
    };
    // Two in-page rings of the same order would overlap.
    if (layout.left_order < 12 and layout.left_order == layout.right_order) return null;
    // The grant list must end before any in-page ring starts: this rejects ocaml-vchan's
    // (1024, order 20) layout, whose 256 grants overlap the ring at offset 1024.
    const grants_end = constants.offset_grants + 4 * layout.grants();
    if (layout.left_order < 12 and grants_end > layout.left_offset()) return null;
    if (layout.right_order < 12 and grants_end > layout.right_offset()) return null;
    if (grants_end > page_bytes) return null;
    return layout;
}

const testing = std.testing;

test "layout: ring-size selection matches libxenvchan" {
    const Row = struct { read_min: u32, write_min: u32, left: u5, right: u5, pages: u32 };
    const rows = [_]Row{
        .{ .read_min = 1, .write_min = 1, .left = 10, .right = 11, .pages = 1 },
        .{ .read_min = 1024, .write_min = 1024, .left = 10, .right = 11, .pages = 1 },
        .{ .read_min = 1024, .write_min = 2048, .left = 10, .right = 11, .pages = 1 },
        .{ .read_min = 2048, .write_min = 1024, .left = 11, .right = 10, .pages = 1 },
        .{ .read_min = 2048, .write_min = 2048, .left = 11, .right = 12, .pages = 2 },
        .{ .read_min = 1025, .write_min = 4096, .left = 11, .right = 12, .pages = 2 },
        .{ .read_min = 4096, .write_min = 2048, .left = 12, .right = 11, .pages = 2 },
        .{ .read_min = 4096, .write_min = 4096, .left = 12, .right = 12, .pages = 3 },
        .{ .read_min = 4097, .write_min = 4096, .left = 13, .right = 12, .pages = 4 },
        .{ .read_min = 65536, .write_min = 65536, .left = 16, .right = 16, .pages = 33 },
        .{ .read_min = 65535, .write_min = 1000, .left = 16, .right = 11, .pages = 17 },
        .{ .read_min = 1 << 20, .write_min = 1 << 20, .left = 20, .right = 20, .pages = 513 },
        .{ .read_min = 1 << 20, .write_min = 100, .left = 20, .right = 11, .pages = 257 },
    };
    for (rows) |row| {
        const layout = try select(row.read_min, row.write_min);
        try testing.expectEqual(row.left, layout.left_order);
        try testing.expectEqual(row.right, layout.right_order);
        try testing.expectEqual(row.pages, layout.pages());
        try testing.expectEqual(row.pages * page_bytes, layout.total_bytes());
        try testing.expect(layout.left_bytes() >= row.read_min);
        try testing.expect(layout.right_bytes() >= row.write_min);
    }
    try testing.expectError(error.RingTooLarge, select((1 << 20) + 1, 1024));
    try testing.expectError(error.RingTooLarge, select(1024, (1 << 20) + 1));
}

test "layout: placement of rings and grants" {
    const both_external = try select(8192, 16384);
    try testing.expectEqual(@as(u32, 4096), both_external.left_offset());
    try testing.expectEqual(@as(u32, 4096 + 8192), both_external.right_offset());
    try testing.expectEqual(@as(u32, 6), both_external.grants());
    try testing.expectEqual(@as(u32, 1), both_external.grant(0));
    try testing.expectEqual(@as(u32, 6), both_external.grant(5));

    const in_page = try select(1024, 1024);
    try testing.expectEqual(@as(u32, 1024), in_page.left_offset());
    try testing.expectEqual(@as(u32, 2048), in_page.right_offset());
    try testing.expectEqual(@as(u32, 0), in_page.grants());

    const mixed = try select(2048, 65536);
    try testing.expectEqual(@as(u32, 2048), mixed.left_offset());
    try testing.expectEqual(@as(u32, 4096), mixed.right_offset());
}

test "layout: page cap" {
    try testing.expectError(error.PageCapExceeded, select_capped(65536, 65536, 32));
    _ = try select_capped(65536, 65536, 33);
    _ = try select_capped(1 << 20, 1 << 20, 0);
    try testing.expectEqual(@as(?u32, 131072), largest_symmetric_fit(128));
    try testing.expectEqual(@as(?u32, 65536), largest_symmetric_fit(33));
    try testing.expectEqual(@as(?u32, 1024), largest_symmetric_fit(1));
    try testing.expectEqual(@as(?u32, 1 << 20), largest_symmetric_fit(0));
}

test "layout: a client accepts every honest layout and rejects the rest" {
    var left: u32 = 10;
    while (left <= 20) : (left += 1) {
        var right: u32 = 10;
        while (right <= 20) : (right += 1) {
            const layout = validate(left, right);
            const same_in_page = left < 12 and left == right;
            const ocaml_overlap = (left == 10 and right == 20) or (right == 10 and left == 20);
            try testing.expectEqual(same_in_page or ocaml_overlap, layout == null);
        }
    }
    // ocaml-vchan's (2048, 2048) choice of (10, 12) is honest and must be accepted.
    try testing.expect(validate(10, 12) != null);
    try testing.expect(validate(9, 12) == null);
    try testing.expect(validate(12, 21) == null);
    try testing.expect(validate(0xffff, 12) == null);
}

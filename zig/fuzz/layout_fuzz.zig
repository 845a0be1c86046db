//! Harness `layout`: a vchan layout offered by an untrusted server (zig/vchan/layout.zig). An
//! accepted layout keeps both rings and the grant list inside the shared memory, apart from one
//! another; `select` honours the sizes asked for and always yields a layout `validate` accepts.
const std = @import("std");
const layout_mod = @import("../vchan/layout.zig");
const constants = @import("../constants.zig");
const Input = @import("input.zig").Input;
const check = @import("check.zig");

pub fn run(bytes: []const u8) void {
    var input = Input.init(bytes);
    const left = input.int(u32);
    const right = input.int(u32);
    // Small values matter most: fold most inputs into the interesting range of orders.
    const fold = input.int(u8) & 1 == 1;
    const l = if (fold) left % 24 else left;
    const r = if (fold) right % 24 else right;
    if (layout_mod.validate(l, r)) |layout| check_layout(layout);

    const read_min = input.int(u32) % (constants.ring_bytes_max + 2);
    const write_min = input.int(u32) % (constants.ring_bytes_max + 2);
    const chosen = layout_mod.select(read_min, write_min) catch {
        check.that(
            read_min > constants.ring_bytes_max or write_min > constants.ring_bytes_max,
            "select refused {d} {d}",
            .{ read_min, write_min },
        );
        return;
    };
    check.that(
        chosen.left_bytes() >= read_min and chosen.right_bytes() >= write_min,
        "select too small",
        .{},
    );
    check.that(
        layout_mod.validate(chosen.left_order, chosen.right_order) != null,
        "select result refused",
        .{},
    );
}

fn check_layout(layout: layout_mod.Layout) void {
    const total = layout.total_bytes();
    const left = .{ layout.left_offset(), layout.left_offset() + layout.left_bytes() };
    const right = .{ layout.right_offset(), layout.right_offset() + layout.right_bytes() };
    const grants_end = constants.offset_grants + 4 * layout.grants();
    check.that(left[1] <= total and right[1] <= total, "ring past the memory", .{});
    check.that(left[1] <= right[0] or right[1] <= left[0], "rings overlap", .{});
    check.that(grants_end <= left[0] and grants_end <= right[0], "grants overlap a ring", .{});
    check.that(grants_end <= constants.page_bytes, "grants past page 0", .{});
    check.that(std.math.isPowerOfTwo(layout.left_bytes()), "left size", .{});
}

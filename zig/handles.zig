//! Handles are what JavaScript holds instead of pointers: a slot index plus a generation, so a
//! handle used after close (or forged) is refused instead of touching freed memory.
const std = @import("std");
const constants = @import("constants.zig");
const assert = std.debug.assert;

const slot_bits = 12;
const generation_max: u32 = (1 << (31 - slot_bits)) - 1;

comptime {
    assert(constants.handles_max == 1 << slot_bits);
}

pub fn Table(comptime T: type) type {
    return struct {
        const Self = @This();

        mutex: std.Thread.Mutex = .{},
        items: [constants.handles_max]?*T = [_]?*T{null} ** constants.handles_max,
        generations: [constants.handles_max]u32 = [_]u32{0} ** constants.handles_max,

        /// A positive handle for `item`, or null when every slot is taken.
        pub fn insert(self: *Self, item: *T) ?u32 {
            self.mutex.lock();
            defer self.mutex.unlock();
            for (&self.items, 0..) |*slot, index| {
                if (slot.* != null) continue;
                slot.* = item;
                const generation = &self.generations[index];
                generation.* = if (generation.* >= generation_max) 1 else generation.* + 1;
                const handle = (generation.* << slot_bits) | @as(u32, @intCast(index));
                assert(handle > 0 and handle <= std.math.maxInt(i32));
                return handle;
            }
            return null;
        }

        pub fn get(self: *Self, handle: u32) ?*T {
            self.mutex.lock();
            defer self.mutex.unlock();
            const index = handle & ((1 << slot_bits) - 1);
            if (self.generations[index] != handle >> slot_bits) return null;
            return self.items[index];
        }

        /// Takes the item out; the handle is dead from now on.
        pub fn remove(self: *Self, handle: u32) ?*T {
            self.mutex.lock();
            defer self.mutex.unlock();
            const index = handle & ((1 << slot_bits) - 1);
            if (self.generations[index] != handle >> slot_bits) return null;
            const item = self.items[index];
            self.items[index] = null;
            return item;
        }
    };
}

test "handles: stale and forged handles are refused" {
    var table = Table(u32){};
    var a: u32 = 1;
    var b: u32 = 2;
    const handle_a = table.insert(&a).?;
    try std.testing.expectEqual(&a, table.get(handle_a).?);
    try std.testing.expectEqual(&a, table.remove(handle_a).?);
    try std.testing.expect(table.get(handle_a) == null);
    try std.testing.expect(table.remove(handle_a) == null);
    const handle_b = table.insert(&b).?;
    // Same slot, new generation: the old handle must not reach the new item.
    try std.testing.expect(handle_a != handle_b);
    try std.testing.expect(table.get(handle_a) == null);
    try std.testing.expect(table.get(0) == null);
    try std.testing.expect(table.get(0x7fff_ffff) == null);
}

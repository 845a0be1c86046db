//! Gathers every Zig test for `zig build test`.
test {
    _ = @import("handles.zig");
    _ = @import("vchan/layout.zig");
    _ = @import("vchan/shm_test.zig");
}

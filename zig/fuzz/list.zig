//! The fuzz harnesses' names, alone so that build.zig can read them (harnesses.zig checks that
//! it has exactly these).
pub const names = [_][]const u8{
    "names", "wire", "layout", "ring", "control", "data", "unpack", "hello", "host",
};

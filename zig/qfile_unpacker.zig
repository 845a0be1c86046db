//! Root of the `qfile-unpacker` executable (zig-out/bin), so that its code in filecopy/cli/
//! may share the library's file-copy engine under zig/.
pub const main = @import("filecopy/cli/qfile_unpacker.zig").main;

//! Root of the `qvm-copy` executable (zig-out/bin), so that its code in filecopy/cli/ may share
//! the library's file-copy rules under zig/.
pub const main = @import("filecopy/cli/qvm_copy.zig").main;

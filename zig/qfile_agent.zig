//! Root of the `qfile-agent` executable (zig-out/bin), so that its code in filecopy/cli/ may
//! share the library's file-copy engine under zig/.
pub const main = @import("filecopy/cli/qfile_agent.zig").main;

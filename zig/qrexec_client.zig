//! Root of the `qrexec-client` executable (zig-out/bin), so that its code in dom0_client/ may
//! share the library's vchans and pump under zig/.
pub const main = @import("dom0_client/main.zig").main;

//! Root of the `qrexec-client-vm` executable (zig-out/bin), so that its code in client_host/ may
//! share the library's helpers under zig/.
pub const main = @import("client_host/front_end.zig").main;

//! Limits and wire constants of the vchan layer. src/constants.ts holds the same values for
//! TypeScript; test/constants.test.ts checks the two against `qrx_constant`.
const std = @import("std");

/// Bumped whenever an export's signature or a shared struct changes.
pub const abi_version: u32 = 6;

pub const page_bytes: u32 = 4096;

/// libxenvchan ring orders: 10 and 11 live inside page 0, 12..20 are separate pages.
/// Order 20 is the largest whose grant list still fits in page 0 (vchan.md §2.2).
pub const ring_order_min: u5 = 10;
pub const ring_order_max: u5 = 20;
pub const ring_bytes_max: u32 = 1 << ring_order_max;

/// `libvchan_is_open` results.
pub const State = enum(i32) { disconnected = 0, connected = 1, waiting = 2 };

/// Notify bits in `cli_notify` / `srv_notify`.
pub const notify_write: u8 = 1;
pub const notify_read: u8 = 2;

/// Offsets in the shared page (`struct vchan_interface`, little-endian).
pub const offset_left_cons: u32 = 0;
pub const offset_left_prod: u32 = 4;
pub const offset_right_cons: u32 = 8;
pub const offset_right_prod: u32 = 12;
pub const offset_left_order: u32 = 16;
pub const offset_right_order: u32 = 18;
pub const offset_cli_live: u32 = 20;
pub const offset_srv_live: u32 = 21;
pub const offset_cli_notify: u32 = 22;
pub const offset_srv_notify: u32 = 23;
pub const offset_grants: u32 = 24;

/// Live byte values.
pub const live_exited: u8 = 0;
pub const live_connected: u8 = 1;
pub const live_waiting: u8 = 2;

/// Rendezvous handshake (SOCK_SEQPACKET): magic "SHMV" and our protocol version. Version 2: the
/// ACCEPT carries only the memfd; kicks travel on the socket itself, no eventfd is exchanged.
pub const handshake_magic: u32 = 0x564d4853;
pub const handshake_version: u16 = 2;

/// Host uids of isolated lab domains when the lab runs as root: domain N runs as base + N
/// (docs/lab.md, "Isolation"). A vchan server accepts a peer in this range besides its own uid
/// and root: under isolation, which peer can reach its socket at all is the host's decision.
pub const domain_uid_base: u32 = 0x5152_0000;
pub const domain_uid_count: u32 = 0x1_0000;

/// A unix socket path must fit `sockaddr_un.sun_path` (108 bytes with the NUL).
pub const socket_path_bytes_max: u32 = 107;

/// Bounded spin before sleeping on the event fd (vchan.md §5.3); 0 disables spinning.
pub const spin_ns_default: u32 = 50 * std.time.ns_per_us;
pub const spin_ns_max: u32 = 1000 * std.time.ns_per_us;

pub const handles_max: u32 = 4096;

comptime {
    std.debug.assert(ring_bytes_max == 1024 * 1024);
    std.debug.assert((@as(u32, 1) << ring_order_min) == 1024);
    // Two external order-20 rings need 512 grants; they must fit after the 24-byte header.
    std.debug.assert(offset_grants + 4 * 2 * (ring_bytes_max / page_bytes) <= page_bytes);
}

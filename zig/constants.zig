//! Limits and wire constants of the vchan layer. Those TypeScript needs reach it through
//! zig/abi.zig (src/abi.generated.ts).
const std = @import("std");

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

/// The start of the shared page (`struct vchan_interface`, little-endian); the grant list follows.
pub const SharedPageHeader = extern struct {
    left_cons: u32,
    left_prod: u32,
    right_cons: u32,
    right_prod: u32,
    left_order: u16,
    right_order: u16,
    cli_live: u8,
    srv_live: u8,
    cli_notify: u8,
    srv_notify: u8,
};

pub const offset_left_cons: u32 = @offsetOf(SharedPageHeader, "left_cons");
pub const offset_left_prod: u32 = @offsetOf(SharedPageHeader, "left_prod");
pub const offset_right_cons: u32 = @offsetOf(SharedPageHeader, "right_cons");
pub const offset_right_prod: u32 = @offsetOf(SharedPageHeader, "right_prod");
pub const offset_left_order: u32 = @offsetOf(SharedPageHeader, "left_order");
pub const offset_right_order: u32 = @offsetOf(SharedPageHeader, "right_order");
pub const offset_cli_live: u32 = @offsetOf(SharedPageHeader, "cli_live");
pub const offset_srv_live: u32 = @offsetOf(SharedPageHeader, "srv_live");
pub const offset_cli_notify: u32 = @offsetOf(SharedPageHeader, "cli_notify");
pub const offset_srv_notify: u32 = @offsetOf(SharedPageHeader, "srv_notify");
pub const offset_grants: u32 = @sizeOf(SharedPageHeader);

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
/// The name prefix of a waiting shm client's offer socket (zig/vchan/shm.zig, "Who connects").
pub const shm_offer_prefix = "shmoffer";

/// Bounded spin before sleeping on the event fd (vchan.md §5.3); 0 disables spinning.
pub const spin_ns_default: u32 = 50 * std.time.ns_per_us;
pub const spin_ns_max: u32 = 1000 * std.time.ns_per_us;

pub const handles_max: u32 = 4096;

comptime {
    std.debug.assert(ring_bytes_max == 1024 * 1024);
    std.debug.assert((@as(u32, 1) << ring_order_min) == 1024);
    // libxenvchan's layout, which a Xen peer shares.
    std.debug.assert(offset_left_order == 16 and offset_cli_live == 20 and offset_grants == 24);
    // Two external order-20 rings need 512 grants; they must fit after the 24-byte header.
    std.debug.assert(offset_grants + 4 * 2 * (ring_bytes_max / page_bytes) <= page_bytes);
}

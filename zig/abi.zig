//! The contract between libqrx and src/native.ts, besides the export signatures (zig/lib.zig's
//! `pub export fn`s): every public declaration here is part of it, and `zig build abi`
//! (zig/abi_gen.zig) writes them, with the exports, to src/abi.generated.ts. An integer becomes
//! a constant, an enum an object of its values, a `packed struct(u32)` an object of bit masks
//! and an `extern struct` its size and field offsets. Most are the modules' own types, named
//! here so that the TypeScript side can only see what this file lists.
const std = @import("std");

const constants = @import("constants.zig");
const vchan = @import("vchan/vchan.zig");
const pump = @import("pump/pump.zig");
const pump_data = @import("pump/data.zig");
const client_host_wire = @import("client_host/wire.zig");
const client_host = @import("client_host/listener.zig");
const filecopy_wire = @import("filecopy/wire.zig");
const filecopy_names = @import("filecopy/names.zig");
const filecopy_pack = @import("filecopy/pack.zig");
const filecopy_unpack = @import("filecopy/unpack.zig");
const protocol = @import("protocol.zig");

/// Bumped whenever an export's signature or anything below changes: src/native.ts refuses a
/// library whose `qrx_abi_version` differs from the value it was generated with.
pub const abi_version: u32 = 17;

// ---------------------------------------------------------------- vchan

pub const page_bytes = constants.page_bytes;
pub const ring_order_min = constants.ring_order_min;
pub const ring_order_max = constants.ring_order_max;
pub const socket_path_bytes_max = constants.socket_path_bytes_max;
pub const domain_uid_base = constants.domain_uid_base;
pub const domain_uid_count = constants.domain_uid_count;
pub const notify_write = constants.notify_write;
pub const notify_read = constants.notify_read;
pub const SharedPageHeader = constants.SharedPageHeader;

/// `vx_is_open`.
pub const VchanState = constants.State;
/// The first argument of the vchan inits.
pub const VchanBackend = vchan.Backend;
pub const VchanRole = vchan.Role;
/// Keys of `qrx_set_config`.
pub const ConfigKey = enum(u32) { spin_ns = 1, pages_max = 2 };

/// What `vx_info` fills in.
pub const Info = extern struct {
    role: u32,
    state: i32,
    left_order: u32,
    right_order: u32,
    read_ring_bytes: u32,
    write_ring_bytes: u32,
    pages: u32,
    kicks: u32,
    wakeups: u32,
    sleeps: u32,
    spin_hits: u32,
    spin_misses: u32,
    spin_budget_ns: u32,
    local_domain: i32,
    remote_domain: i32,
    port: i32,
    backend: u32,
};

// ---------------------------------------------------------------- the pump

pub const StreamKind = pump.Kind;
/// `qp_attach`'s flags.
pub const AttachFlags = pump.Flags;
pub const Sigusr1Mode = pump.Sigusr1Mode;
/// `qp_make_service_stdio`'s flags, and `qp_attach`'s for the service it starts.
pub const ServiceStdioFlags = packed struct(u32) {
    stderr_pipe: bool = false,
    /// Stdout as a pipe instead of upstream's socketpair (a qrx option).
    stdout_pipe: bool = false,
    _pad: u30 = 0,
};
/// What `qp_stream_traffic` fills in.
pub const StreamTraffic = pump.Traffic;

pub const PumpEventKind = pump.events.Kind;
/// Each record `qp_poll_events` copies out starts with this; its payload follows, padded to a
/// multiple of `event_record_align`.
pub const EventHeader = extern struct {
    stream: u32,
    kind: u32,
    value: i32,
    payload_len: u32,
};
pub const event_record_align: u32 = 4;
/// A DONE record's payload: one u64 time per mark, in this order.
pub const PumpMark = pump_data.Mark;

// ---------------------------------------------------------------- the client host

pub const ClientReply = client_host_wire.ReplyKind;
/// The longest text of a `message` reply.
pub const client_message_bytes_max = client_host_wire.message_bytes_max;
/// What a front end's header says (a test's fake front end speaks it).
pub const client_host_version = client_host_wire.version;
/// A `client_request` record's payload starts with this; the strings follow.
pub const ClientRequestPrefix = extern struct {
    fds: [3]i32,
    argc: u32,
    envc: u32,
};
/// A `client_local_started` record's payload: our ends of the local program's stdin, stdout.
pub const client_local_fds = client_host_wire.local_fds;

// ---------------------------------------------------------------- filecopy

pub const filecopy_legal_eof = filecopy_wire.legal_eof;
pub const filecopy_path_length_max = filecopy_wire.path_length_max;
pub const filecopy_header_bytes = filecopy_wire.header_bytes;
/// `qf_validate_path` and `qf_validate_symlink`'s flags.
pub const NamesFlags = filecopy_names.Flags;
pub const UnpackFlags = filecopy_unpack.Flags;
pub const UnpackStats = filecopy_unpack.Stats;
pub const PackFlags = filecopy_pack.Flags;
pub const PackResult = filecopy_pack.Result;

// ---------------------------------------------------------------- the qrexec wire

// Not used across the FFI boundary: both languages parse the wire themselves, and
// src/protocol/constants.ts keeps its own spelling of these, which a test compares with them.
pub const ProtocolMsgType = protocol.MsgType;
pub const protocol_version_min = protocol.version_min;
pub const protocol_version_max = protocol.version_max;
pub const client_protocol_version = protocol.client_protocol_version;
pub const exit_signal_base = protocol.exit_signal_base;
pub const exit_no_status = protocol.exit_no_status;
pub const max_data_chunk_v2 = protocol.max_data_chunk_v2;
pub const max_data_chunk_v3 = protocol.max_data_chunk_v3;
pub const protocol_header_bytes = protocol.header_bytes;
pub const protocol_exit_code_bytes = protocol.exit_code_bytes;
pub const control_body_bytes_max = protocol.control_body_bytes_max;

comptime {
    // The writers of these records lay them out byte by byte (pump/events.zig `push`,
    // client_host/listener.zig): they must agree with the structs TypeScript reads.
    std.debug.assert(@sizeOf(EventHeader) == pump.events.record_header_bytes);
    std.debug.assert(@sizeOf(ClientRequestPrefix) == client_host.request_record_prefix_bytes);
}

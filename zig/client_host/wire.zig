//! The client-host socket: how the native `qrexec-client-vm` front end
//! (zig/client_host/front_end.zig) hands a call to the agent it talks to, which runs it
//! in-process (src/agent/client-host.ts) instead of a new Bun process per call. Local to one
//! domain and one build: both ends come from this repository, so a version mismatch is answered
//! with `fallback`, never an error.
//!
//! Front end -> agent, on `<agent socket>.clients` (AF_UNIX, SOCK_STREAM):
//!   1. `RequestHeader` in one sendmsg carrying SCM_RIGHTS with exactly 3 fds: its 0, 1, 2.
//!   2. `payload_bytes` bytes: `argc` NUL-terminated arguments (argv[1..], not argv[0]), then
//!      `envc` NUL-terminated `KEY=VALUE` environment entries. Nothing else.
//!   3. Afterwards, records that each start with a tag byte: `signal_byte` per SIGUSR1 the
//!      front end receives, and for a call with a local program (`start_local`) the
//!      `LocalTag` records.
//! Agent -> front end: `fallback`; or `accepted` (or, with a local program, `start_local`, and
//! `sync` when its stdout ends) and later `exit`; the agent closes after `fallback` or `exit`.
//! A front end that sees EOF before any reply was refused (the agent never had its call);
//! after one, before `exit`, it lost its agent mid-call.
const std = @import("std");

pub const magic: u32 = 0x48585251; // "QRXH", little-endian
pub const version: u32 = 3;

/// Appended to the agent's trigger socket path.
pub const socket_suffix = ".clients";

/// Requests larger than this are not sent (the front end falls back to the Bun CLI).
pub const payload_bytes_max: u32 = 1 << 20;

/// The front end's fds 0, 1 and 2, in that order.
pub const passed_fds: u32 = 3;

/// Sent by the front end once per SIGUSR1 (single-socket mode, qrexec-protocol.md §6.6).
pub const signal_byte: u8 = 'U';

/// The front end's records about its local program, after `start_local` (the program is its
/// child: its working directory, session and terminal are the caller's, as upstream's).
pub const LocalTag = enum(u8) {
    /// The program runs. Followed by an i32 (little-endian): its pid (the agent's pump names
    /// it the stream's child, see pump.zig `settle_held_eof`). The record carries SCM_RIGHTS
    /// with exactly `local_fds` fds: our ends of its stdin and of its stdout socketpairs, in
    /// that order.
    started = 'S',
    /// Followed by an i32 (little-endian): the errno with which it could not be started.
    failed = 'F',
    /// Followed by an i32 (little-endian): its status, the exit code or 128+N for signal N.
    exited = 'X',
    /// Followed by an i32 0: the answer to `sync`, after every `signal_byte` owed before it.
    synced = 'Y',
};

pub const local_fds: u32 = 2;

/// A tag and its i32.
pub const local_record_bytes_max: u32 = 5;

pub const RequestHeader = extern struct {
    magic: u32,
    version: u32,
    argc: u32,
    envc: u32,
    payload_bytes: u32,
};

pub const ReplyKind = enum(u32) {
    /// `value` is the exit status the front end exits with.
    exit = 1,
    /// The agent will not run this call; the front end execs the Bun CLI with its own argv,
    /// having consumed none of its stdin.
    fallback = 2,
    /// The agent runs the call on the fds it was given: the front end closes its stdin and
    /// stdout, so that a reader of its output sees EOF when the call's output ends, not when
    /// the front end exits.
    accepted = 3,
    /// The agent cannot take a call now (`value` = errno: EMFILE, ENFILE): the front end says
    /// so and exits 126, as a call whose set-up failed before CONNECT (qrexec-protocol.md §8).
    refused = 4,
    /// The call, which names a local program, is allowed: the front end starts the program now
    /// (as upstream's qrexec-client-vm, §10 step 3: socketpairs as its stdin and stdout, our
    /// fds 0 and 1 as its 3 and 4, and 2 as 5 with PASS_LOCAL_STDERR, with SAVED_FD_* and
    /// QREXEC_AGENT_PID set), closes its own stdin and stdout, answers `LocalTag.started` or
    /// `failed`, later `exited`, and waits for `exit`.
    start_local = 5,
    /// `value` bytes of text (1 to `message_bytes_max`) follow: the front end writes them to
    /// its stderr. What the agent says about a call once the call's stream holds the front
    /// end's stderr, so that the agent keeps no copy of it: the caller sees that stderr end
    /// when the call's stream does and the front end exits. Comes before `exit`.
    message = 6,
    /// The local program's stdout has ended and the agent holds that EOF until it knows no
    /// SIGUSR1 of the program's is still on its way (§6.6: a program may signal, close its
    /// stdout, then write to its fd 0). The front end answers `LocalTag.synced` once it has sent
    /// the byte of every SIGUSR1 it got: its handler runs before it reads this. `value` is 0.
    sync = 7,
};

pub const message_bytes_max: u32 = 4096;

pub const Reply = extern struct {
    kind: u32,
    value: i32,
};

comptime {
    std.debug.assert(@sizeOf(RequestHeader) == 20);
    std.debug.assert(@sizeOf(Reply) == 8);
    std.debug.assert(@import("builtin").cpu.arch.endian() == .little);
}

// Constants of the vchan layer, mirrored from zig/constants.zig. test/constants.test.ts checks
// every value here against the native library's `qrx_constant`, so the two cannot drift apart.

/** Bumped with zig/constants.zig `abi_version` whenever an export or shared struct changes. */
export const ABI_VERSION = 6;

export const PAGE_BYTES = 4096;
export const RING_ORDER_MIN = 10;
export const RING_ORDER_MAX = 20;
export const RING_BYTES_MAX = 1 << RING_ORDER_MAX;

/** libvchan_is_open results. */
export const VchanState = { Disconnected: 0, Connected: 1, Waiting: 2 } as const;
export type VchanState = (typeof VchanState)[keyof typeof VchanState];

export const NOTIFY_WRITE = 1;
export const NOTIFY_READ = 2;

/** Offsets in the shared page (libxenvchan `struct vchan_interface`). */
export const SharedPage = {
  leftCons: 0,
  leftProd: 4,
  rightCons: 8,
  rightProd: 12,
  leftOrder: 16,
  rightOrder: 18,
  cliLive: 20,
  srvLive: 21,
  cliNotify: 22,
  srvNotify: 23,
  grants: 24,
} as const;

/** Keys of `qrx_set_config`. */
export const ConfigKey = { SpinNs: 1, PagesMax: 2 } as const;

/** Size of the struct `vx_info` fills in. */
export const INFO_BYTES = 68;

/** Vchan backends (zig/vchan/vchan.zig `Backend`): the first argument of the vchan inits. */
export const VchanBackend = { shm: 0, socket: 1 } as const;
export type VchanBackendName = keyof typeof VchanBackend;

export const SOCKET_PATH_BYTES_MAX = 107;

/** Ids of `qrx_constant`, in zig/lib.zig `ConstantId` order. */
export const ConstantId = {
  abiVersion: 1,
  pageBytes: 2,
  ringOrderMin: 3,
  ringOrderMax: 4,
  stateDisconnected: 5,
  stateConnected: 6,
  stateWaiting: 7,
  notifyWrite: 8,
  notifyRead: 9,
  offsetLeftCons: 10,
  offsetLeftProd: 11,
  offsetRightCons: 12,
  offsetRightProd: 13,
  offsetLeftOrder: 14,
  offsetRightOrder: 15,
  offsetCliLive: 16,
  offsetSrvLive: 17,
  offsetCliNotify: 18,
  offsetSrvNotify: 19,
  offsetGrants: 20,
  infoBytes: 21,
  configSpinNs: 22,
  configPagesMax: 23,
  socketPathBytesMax: 24,
  eventHeaderBytes: 25,
  streamControl: 26,
  streamDataService: 27,
  streamDataClient: 28,
  backendShm: 29,
  backendSocket: 30,
  filecopyLegalEof: 31,
  filecopyPathLengthMax: 32,
  filecopyHeaderBytes: 33,
  filecopyUnpackStatsBytes: 34,
  filecopyPackResultBytes: 35,
  filecopyPackResultLastNameOffset: 36,
  filecopyPackResultLastNameBytes: 37,
  eventClientRequest: 38,
  eventClientSignal: 39,
  eventClientGone: 40,
  clientReplyExit: 41,
  clientReplyFallback: 42,
  clientReplyAccepted: 43,
  clientRequestPrefixBytes: 44,
  eventClientRefused: 45,
  pumpMarkCount: 46,
  domainUidBase: 47,
  domainUidCount: 48,
} as const;

/** Kinds of pump streams (zig/pump/pump.zig `Kind`). */
export const StreamKind = { Control: 0, DataService: 1, DataClient: 2 } as const;
export type StreamKind = (typeof StreamKind)[keyof typeof StreamKind];

/** Kinds of pump event records (zig/pump/events.zig `Kind`). */
export const PumpEventKind = {
  Connected: 1,
  Message: 2,
  Done: 3,
  Failed: 4,
  ClientRequest: 5,
  ClientSignal: 6,
  ClientGone: 7,
  ClientRefused: 8,
} as const;
export type PumpEventKind = (typeof PumpEventKind)[keyof typeof PumpEventKind];

/** Size of an event record's header: u32 stream, u32 kind, i32 value, u32 payload length. */
export const EVENT_HEADER_BYTES = 16;

/** qubes.Filecopy (zig/filecopy/wire.zig, pack.zig, unpack.zig; spec filecopy.md §2). */
export const FILECOPY_LEGAL_EOF = 31415926;
export const FILECOPY_PATH_LENGTH_MAX = 16384;
export const FILECOPY_HEADER_BYTES = 32;
/** `qf_unpack`'s stats: u64 files, dirs, symlinks, bytes; u32 crc, code. */
export const FILECOPY_UNPACK_STATS_BYTES = 40;
/** `qf_pack`'s result: u32 remote_code, local_crc, remote_crc, has_last_name; u64 bytes,
 * entries; u32 last_name_len; u8 last_name[256]; padded to 8. */
export const FILECOPY_PACK_RESULT_BYTES = 296;
export const FILECOPY_PACK_RESULT_LAST_NAME_OFFSET = 36;
export const FILECOPY_PACK_RESULT_LAST_NAME_BYTES = 256;

/**
 * A data stream's DONE payload: when the pump first reached each of these stages, u64
 * CLOCK_REALTIME ns each (0: not reached), in this order (zig/pump/data.zig `Mark`).
 */
export const PUMP_MARKS = [
  "first-byte-sent",
  "first-byte-received",
  "eof-sent",
  "eof-received",
  "exit-sent",
  "exit-received",
] as const;

/**
 * The client host's replies to a qrexec-client-vm front end (zig/client_host/wire.zig `ReplyKind`).
 */
export const ClientReply = { Exit: 1, Fallback: 2, Accepted: 3 } as const;
/** A client request record's payload starts with i32 fds[3], u32 argc, u32 envc. */
export const CLIENT_REQUEST_PREFIX_BYTES = 20;

/** Isolated lab domains run as host uid DOMAIN_UID_BASE + id when the lab runs as root; a vchan
 * server accepts peers in this range (zig/constants.zig). */
export const DOMAIN_UID_BASE = 0x5152_0000;
export const DOMAIN_UID_COUNT = 0x1_0000;

/** The value TypeScript expects for each constant id. */
export const expectedConstants: Record<keyof typeof ConstantId, number> = {
  abiVersion: ABI_VERSION,
  pageBytes: PAGE_BYTES,
  ringOrderMin: RING_ORDER_MIN,
  ringOrderMax: RING_ORDER_MAX,
  stateDisconnected: VchanState.Disconnected,
  stateConnected: VchanState.Connected,
  stateWaiting: VchanState.Waiting,
  notifyWrite: NOTIFY_WRITE,
  notifyRead: NOTIFY_READ,
  offsetLeftCons: SharedPage.leftCons,
  offsetLeftProd: SharedPage.leftProd,
  offsetRightCons: SharedPage.rightCons,
  offsetRightProd: SharedPage.rightProd,
  offsetLeftOrder: SharedPage.leftOrder,
  offsetRightOrder: SharedPage.rightOrder,
  offsetCliLive: SharedPage.cliLive,
  offsetSrvLive: SharedPage.srvLive,
  offsetCliNotify: SharedPage.cliNotify,
  offsetSrvNotify: SharedPage.srvNotify,
  offsetGrants: SharedPage.grants,
  infoBytes: INFO_BYTES,
  configSpinNs: ConfigKey.SpinNs,
  configPagesMax: ConfigKey.PagesMax,
  socketPathBytesMax: SOCKET_PATH_BYTES_MAX,
  eventHeaderBytes: EVENT_HEADER_BYTES,
  streamControl: StreamKind.Control,
  streamDataService: StreamKind.DataService,
  streamDataClient: StreamKind.DataClient,
  backendShm: VchanBackend.shm,
  backendSocket: VchanBackend.socket,
  filecopyLegalEof: FILECOPY_LEGAL_EOF,
  filecopyPathLengthMax: FILECOPY_PATH_LENGTH_MAX,
  filecopyHeaderBytes: FILECOPY_HEADER_BYTES,
  filecopyUnpackStatsBytes: FILECOPY_UNPACK_STATS_BYTES,
  filecopyPackResultBytes: FILECOPY_PACK_RESULT_BYTES,
  filecopyPackResultLastNameOffset: FILECOPY_PACK_RESULT_LAST_NAME_OFFSET,
  filecopyPackResultLastNameBytes: FILECOPY_PACK_RESULT_LAST_NAME_BYTES,
  eventClientRequest: PumpEventKind.ClientRequest,
  eventClientSignal: PumpEventKind.ClientSignal,
  eventClientGone: PumpEventKind.ClientGone,
  clientReplyExit: ClientReply.Exit,
  clientReplyFallback: ClientReply.Fallback,
  clientReplyAccepted: ClientReply.Accepted,
  clientRequestPrefixBytes: CLIENT_REQUEST_PREFIX_BYTES,
  eventClientRefused: PumpEventKind.ClientRefused,
  pumpMarkCount: PUMP_MARKS.length,
  domainUidBase: DOMAIN_UID_BASE,
  domainUidCount: DOMAIN_UID_COUNT,
};

// Constants of the vchan layer under the names the rest of src/ imports. The values come from
// src/abi.generated.ts (`zig build abi` writes it from zig/abi.zig), so they cannot drift from
// the library's; what is defined here is TypeScript's own naming of them.
import {
  ClientRequestPrefix,
  EventHeader,
  Info,
  PackResult,
  SharedPageHeader,
  UnpackStats,
  VchanBackend as VchanBackendId,
} from "./abi.generated.ts";

export {
  ABI_VERSION,
  ClientReply,
  ConfigKey,
  DOMAIN_UID_BASE,
  DOMAIN_UID_COUNT,
  FILECOPY_HEADER_BYTES,
  FILECOPY_LEGAL_EOF,
  FILECOPY_PATH_LENGTH_MAX,
  NOTIFY_READ,
  NOTIFY_WRITE,
  PAGE_BYTES,
  PumpEventKind,
  RING_ORDER_MAX,
  RING_ORDER_MIN,
  SOCKET_PATH_BYTES_MAX,
  StreamKind,
  VchanState,
} from "./abi.generated.ts";

/** Offsets in the shared page (libxenvchan `struct vchan_interface`). */
export const SharedPage = {
  leftCons: SharedPageHeader.fields.leftCons.offset,
  leftProd: SharedPageHeader.fields.leftProd.offset,
  rightCons: SharedPageHeader.fields.rightCons.offset,
  rightProd: SharedPageHeader.fields.rightProd.offset,
  leftOrder: SharedPageHeader.fields.leftOrder.offset,
  rightOrder: SharedPageHeader.fields.rightOrder.offset,
  cliLive: SharedPageHeader.fields.cliLive.offset,
  srvLive: SharedPageHeader.fields.srvLive.offset,
  cliNotify: SharedPageHeader.fields.cliNotify.offset,
  srvNotify: SharedPageHeader.fields.srvNotify.offset,
  grants: SharedPageHeader.bytes,
} as const;

/** Size of the struct `vx_info` fills in. */
export const INFO_BYTES = Info.bytes;

/** Vchan backends by the names users give them (QRX_VCHAN, `--backend`). */
export const VchanBackend = { shm: VchanBackendId.Shm, socket: VchanBackendId.Socket } as const;
export type VchanBackendName = keyof typeof VchanBackend;

/** Size of an event record's header. */
export const EVENT_HEADER_BYTES = EventHeader.bytes;

/** qubes.Filecopy's result structs (spec filecopy.md §2). */
export const FILECOPY_UNPACK_STATS_BYTES = UnpackStats.bytes;
export const FILECOPY_PACK_RESULT_BYTES = PackResult.bytes;
export const FILECOPY_PACK_RESULT_LAST_NAME_OFFSET = PackResult.fields.lastName.offset;
export const FILECOPY_PACK_RESULT_LAST_NAME_BYTES = PackResult.fields.lastName.count;

/**
 * A data stream's DONE payload: when the pump first reached each of these stages, u64
 * CLOCK_REALTIME ns each (0: not reached), in the order of the generated `PumpMark`
 * (test/constants.test.ts checks it).
 */
export const PUMP_MARKS = [
  "first-byte-sent",
  "first-byte-received",
  "eof-sent",
  "eof-received",
  "exit-sent",
  "exit-received",
] as const;

/** A client request record's payload starts with i32 fds[3], u32 argc, u32 envc. */
export const CLIENT_REQUEST_PREFIX_BYTES = ClientRequestPrefix.bytes;

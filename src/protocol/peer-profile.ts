// Peer profiles: how this domain's qrexec programs behave on the wire. `default` is the Linux
// agent's behaviour (upstream R4.3); `mirage` is a mirage-qubes 2.0 unikernel's (spec
// qrexec-protocol.md §14), so our daemon and clients can be tested against one without a Xen
// host. Everything that makes the mirage profile different lives here (plus two pump flags,
// `mirage_service` and `mirage_chunk_bug` in zig/pump/data.zig).
//
//   qrexec-agent --peer-profile=mirage       the unikernel's agent side
//   qrexec-client-vm --peer-profile=mirage   its outgoing calls' data side
//   QRX_MIRAGE_BUGS=chunk-length,trigger3-ident   reproduce its known wire bugs (test knobs)
//
// The flag and the knob names are stable: the conformance kit (src/conformance) drives them.

import type { StreamOptions } from "../native.ts";
import {
  encodeTrigger3,
  encodeTriggerForVersion,
  encodeFixedField,
  trigger4To3,
  type Trigger4,
} from "./codec.ts";
import {
  IDENT_BYTES,
  MSG_TRIGGER_SERVICE3,
  QREXEC_PROTOCOL_V3,
  QREXEC_PROTOCOL_VERSION,
} from "./constants.ts";

export const PEER_PROFILES = ["default", "mirage"] as const;
export type PeerProfileName = (typeof PEER_PROFILES)[number];

/** mirage-qubes 2.0 wire bugs the mirage profile can reproduce (§14, "Bugs in v2.0.0"). */
export const MIRAGE_BUGS = ["chunk-length", "trigger3-ident"] as const;
export type MirageBug = (typeof MIRAGE_BUGS)[number];

/** A mirage-qubes Xen domain has a 128-entry grant table (vchan.md §3). */
export const MIRAGE_PAGES_MAX = 128;

export interface PeerProfile {
  name: PeerProfileName;
  /** The protocol version we announce (the stream runs at min(ours, peer's)). */
  version: number;
  /** Minimum control vchan ring sizes as its server (libvchan's read_min, write_min). */
  controlRing: { readMin: number; writeMin: number };
  /** Page cap for every vchan of the process (null: none, or QRX_MAX_PAGES). */
  pagesMax: number | null;
  /** On data vchans where we are the client (incoming calls): HELLO before the peer's. */
  dataHelloFirst: boolean;
  /** Ring size of the data vchans we serve (qrexec-client-vm's default --buffer-size). */
  dataRingBytes: number;
  /** Request ids this profile puts in its triggers. */
  identPrefix: string;
  ident(counter: number): string;
  /** The counter in an ident of ours, or null. */
  identCounter(ident: string): number | null;
  /** Pump flags for the service side of incoming calls. */
  serviceFlags: Pick<StreamOptions, "mirageService" | "mirageChunkBug">;
  /** Pump flags for the caller's side (qrexec-client-vm). */
  callerFlags: Pick<StreamOptions, "mirageChunkBug">;
  /** The trigger for the daemon at `version`. */
  encodeTrigger(trigger: Trigger4, version: number): { type: number; payload: Uint8Array };
  bugs: ReadonlySet<MirageBug>;
}

/** Parses QRX_MIRAGE_BUGS ("chunk-length,trigger3-ident"); unknown names are an error. */
export function parseMirageBugs(text: string | undefined): Set<MirageBug> {
  const bugs = new Set<MirageBug>();
  for (const item of (text ?? "")
    .split(",")
    .map((part) => part.trim())
    .filter(Boolean)) {
    if (!(MIRAGE_BUGS as readonly string[]).includes(item)) {
      throw new Error(`QRX_MIRAGE_BUGS: unknown bug '${item}' (known: ${MIRAGE_BUGS.join(", ")})`);
    }
    bugs.add(item as MirageBug);
  }
  return bugs;
}

export function parsePeerProfileName(text: string): PeerProfileName {
  if (!(PEER_PROFILES as readonly string[]).includes(text)) {
    throw new Error(`unknown peer profile '${text}' (known: ${PEER_PROFILES.join(", ")})`);
  }
  return text as PeerProfileName;
}

const SOCKET_PREFIX = "SOCKET";
const MIRAGE_PREFIX = "MIRAGE";
const MIRAGE_COUNTER_DIGITS = 25;

function counterAfter(prefix: string, digits: number | null) {
  return (ident: string): number | null => {
    if (!ident.startsWith(prefix)) return null;
    const rest = ident.slice(prefix.length);
    if (!/^[0-9]+$/.test(rest) || (digits !== null && rest.length !== digits)) return null;
    const value = Number(rest);
    return Number.isSafeInteger(value) ? value : null;
  };
}

/**
 * Data rings of 128 KiB each way where upstream has 64 KiB (§9, §10; still a minimum, and
 * `--buffer-size` is honoured exactly): a 64 KiB ring cannot hold one full v3 chunk and its
 * header, so the two pumps of a call take turns instead of overlapping. Measured in
 * `qrx bench call`: to-service from ~80% to ~100% of the 3-hop pipe (docs/benchmarks.md).
 * 65 pages, inside a MirageOS peer's 128-page cap.
 */
export const DEFAULT_DATA_RING_BYTES = 131072;

const DEFAULT_PROFILE: PeerProfile = {
  name: "default",
  version: QREXEC_PROTOCOL_VERSION,
  // Linux agents use 4 KiB control rings (§1.1).
  controlRing: { readMin: 4096, writeMin: 4096 },
  pagesMax: null,
  dataHelloFirst: true,
  dataRingBytes: DEFAULT_DATA_RING_BYTES,
  identPrefix: SOCKET_PREFIX,
  ident: (counter) => `${SOCKET_PREFIX}${counter}`,
  identCounter: counterAfter(SOCKET_PREFIX, null),
  serviceFlags: {},
  callerFlags: {},
  encodeTrigger: encodeTriggerForVersion,
  bugs: new Set(),
};

/**
 * mirage-qubes 2.0 (§14): HELLO 3 (a peer at 2 gives 2, anything above 3 gives 3: min() does
 * exactly that); control rings 1024 read / 2048 write (ocaml-vchan's defaults, 1024/1024 asked);
 * a 128-page cap; on incoming calls it is the data client and answers the caller's HELLO; as a
 * service it sends no stderr EOF, ends with DATA_STDOUT("") then EXIT_CODE, and drops the vchan
 * on anything but DATA_STDIN; its triggers are TRIGGER3 (or TRIGGER at v2) with "MIRAGE" + 25
 * digits as the request id. Unknown control messages are logged and ignored, and
 * CONNECTION_TERMINATED follows each exec, as our default agent does anyway.
 */
function mirageProfile(bugs: Set<MirageBug>): PeerProfile {
  return {
    name: "mirage",
    version: QREXEC_PROTOCOL_V3,
    controlRing: { readMin: 1024, writeMin: 1024 },
    pagesMax: MIRAGE_PAGES_MAX,
    dataHelloFirst: false,
    dataRingBytes: 1024,
    identPrefix: MIRAGE_PREFIX,
    ident: (counter) => `${MIRAGE_PREFIX}${String(counter).padStart(MIRAGE_COUNTER_DIGITS, "0")}`,
    identCounter: counterAfter(MIRAGE_PREFIX, MIRAGE_COUNTER_DIGITS),
    serviceFlags: { mirageService: true, mirageChunkBug: bugs.has("chunk-length") },
    callerFlags: { mirageChunkBug: bugs.has("chunk-length") },
    encodeTrigger(trigger, version) {
      const message = encodeTriggerForVersion(trigger, Math.min(version, QREXEC_PROTOCOL_V3));
      if (message.type !== MSG_TRIGGER_SERVICE3 || !bugs.has("trigger3-ident")) return message;
      // Bug 2: the V3 branch of `service_params` writes the request id where the name belongs.
      const trigger3 = trigger4To3(trigger);
      const ident = encodeFixedField(trigger3.ident, IDENT_BYTES);
      const identText = new TextDecoder().decode(
        ident.subarray(0, ident.indexOf(0) === -1 ? IDENT_BYTES : ident.indexOf(0)),
      );
      return {
        type: MSG_TRIGGER_SERVICE3,
        payload: encodeTrigger3({ ...trigger3, service: identText }),
      };
    },
    bugs,
  };
}

/** The profile `name`, with QRX_MIRAGE_BUGS from `env` for the mirage profile. */
export function peerProfile(
  name: PeerProfileName,
  env: Record<string, string | undefined> = process.env,
): PeerProfile {
  if (name === "default") return DEFAULT_PROFILE;
  return mirageProfile(parseMirageBugs(env.QRX_MIRAGE_BUGS));
}

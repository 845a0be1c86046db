// qrexec's wire numbers (docs/spec/qrexec-protocol.md §3, §4, §7.5, §8). Pure data: every
// limit the protocol layer checks is named here, and `protocolConstants` lists each numeric one
// under a stable snake_case name so a test can compare it with the Zig side.

/** Message types (§3.2). */
export const MSG_DATA_STDIN = 0x190;
export const MSG_DATA_STDOUT = 0x191;
export const MSG_DATA_STDERR = 0x192;
export const MSG_DATA_EXIT_CODE = 0x193;
export const MSG_EXEC_CMDLINE = 0x200;
export const MSG_JUST_EXEC = 0x201;
export const MSG_SERVICE_CONNECT = 0x202;
export const MSG_SERVICE_REFUSED = 0x203;
export const MSG_TRIGGER_SERVICE = 0x210;
export const MSG_CONNECTION_TERMINATED = 0x211;
export const MSG_TRIGGER_SERVICE3 = 0x212;
export const MSG_TRIGGER_SERVICE4 = 0x213;
export const MSG_HELLO = 0x300;

/** Protocol versions (§4.1). The client protocol is the dom0 qrexec-client ↔ daemon socket. */
export const QREXEC_PROTOCOL_V2 = 2;
export const QREXEC_PROTOCOL_V3 = 3;
export const QREXEC_PROTOCOL_V4 = 4;
export const QREXEC_PROTOCOL_VERSION = QREXEC_PROTOCOL_V4;
export const QREXEC_CLIENT_PROTOCOL_VERSION = QREXEC_PROTOCOL_V3;
export const QREXEC_PROTOCOL_VERSION_MIN = QREXEC_PROTOCOL_V2;

/** Data payload limits (§3.4). A larger incoming `len` is fatal for the receiver. */
export const MAX_DATA_CHUNK_V2 = 4096;
export const MAX_DATA_CHUNK_V3 = 65536;

export const MAX_SERVICE_NAME_LEN = 65000;
export const NAME_MAX = 255;
export const MAX_QREXEC_CMD_LEN = 65535;

/** Data vchan ports are VCHAN_BASE_PORT + 1 + slot, slot < MAX_CLIENTS (§7.5). */
export const VCHAN_BASE_PORT = 512;
export const MAX_CLIENTS = 256;
export const DATA_PORT_MIN = VCHAN_BASE_PORT + 1;
export const DATA_PORT_MAX = VCHAN_BASE_PORT + MAX_CLIENTS;

/** Struct sizes in bytes (§3.1, §3.3). "Fixed" sizes exclude the variable tail. */
export const HEADER_BYTES = 8;
export const EXEC_PARAMS_FIXED_BYTES = 8;
export const IDENT_BYTES = 32;
export const SERVICE_PARAMS_BYTES = IDENT_BYTES;
export const PEER_INFO_BYTES = 4;
export const EXIT_CODE_BYTES = 4;
export const DOMAIN_NAME_V2_BYTES = 32;
export const DOMAIN_NAME_BYTES = 64;
export const SERVICE_NAME_V2_BYTES = 64;
export const TRIGGER_V2_BYTES = SERVICE_NAME_V2_BYTES + DOMAIN_NAME_V2_BYTES + IDENT_BYTES;
export const TRIGGER3_FIXED_BYTES = DOMAIN_NAME_BYTES + IDENT_BYTES;
export const TRIGGER4_FIXED_BYTES = DOMAIN_NAME_BYTES + DOMAIN_NAME_BYTES + IDENT_BYTES;

/** Policy daemon responses are read to EOF and must stay below this size (§3.4). */
export const POLICY_RESPONSE_BYTES_MAX = 4096;

/** Exit codes (§8). */
export const QREXEC_EXIT_SUCCESS = 0;
export const QREXEC_EXIT_FATAL = 1;
export const QREXEC_EXIT_USAGE = 2;
export const QREXEC_EXIT_PROBLEM = 125;
export const QREXEC_EXIT_REQUEST_REFUSED = 126;
export const QREXEC_EXIT_SERVICE_NOT_FOUND = 127;
export const QREXEC_EXIT_SIGNAL_BASE = 128;
/** A client whose vchan closed before EXIT_CODE, or an EXIT_CODE payload under 4 bytes. */
export const QREXEC_EXIT_NO_STATUS = 255;

/** Default paths (§1, §5.3, §5.4, §7.4). */
export const DEFAULT_SERVICE_PATH = "/run/qubes-rpc:/usr/local/etc/qubes-rpc:/etc/qubes-rpc";
export const DEFAULT_RPC_CONFIG_PATH =
  "/run/qubes/rpc-config:/usr/local/etc/qubes/rpc-config:/etc/qubes/rpc-config";
export const DEFAULT_AGENT_SOCKET = "/var/run/qubes/qrexec-agent";
/**
 * qrx's own: the agent's client host listens at the agent socket's path plus this
 * (zig/client_host/wire.zig).
 */
export const CLIENT_HOST_SOCKET_SUFFIX = ".clients";
export const DEFAULT_DAEMON_SOCKET_DIR = "/var/run/qubes";
export const DEFAULT_POLICY_SOCKET = "/run/qubes/policy.sock";
/** `%s` is replaced by the user name. */
export const DEFAULT_FORK_SERVER_SOCKET = "/var/run/qubes/qrexec-server.%s.sock";

/** The command prefixes of §3.6. */
export const RPC_REQUEST_COMMAND = "QUBESRPC";
export const NOGUI_COMMAND_PREFIX = "nogui:";
export const DEFAULT_USER_PREFIX = "DEFAULT:";

/** Every numeric constant above, under the name the Zig side uses. */
export const protocolConstants: Record<string, number> = {
  msg_data_stdin: MSG_DATA_STDIN,
  msg_data_stdout: MSG_DATA_STDOUT,
  msg_data_stderr: MSG_DATA_STDERR,
  msg_data_exit_code: MSG_DATA_EXIT_CODE,
  msg_exec_cmdline: MSG_EXEC_CMDLINE,
  msg_just_exec: MSG_JUST_EXEC,
  msg_service_connect: MSG_SERVICE_CONNECT,
  msg_service_refused: MSG_SERVICE_REFUSED,
  msg_trigger_service: MSG_TRIGGER_SERVICE,
  msg_connection_terminated: MSG_CONNECTION_TERMINATED,
  msg_trigger_service3: MSG_TRIGGER_SERVICE3,
  msg_trigger_service4: MSG_TRIGGER_SERVICE4,
  msg_hello: MSG_HELLO,
  protocol_v2: QREXEC_PROTOCOL_V2,
  protocol_v3: QREXEC_PROTOCOL_V3,
  protocol_v4: QREXEC_PROTOCOL_V4,
  protocol_version: QREXEC_PROTOCOL_VERSION,
  client_protocol_version: QREXEC_CLIENT_PROTOCOL_VERSION,
  protocol_version_min: QREXEC_PROTOCOL_VERSION_MIN,
  max_data_chunk_v2: MAX_DATA_CHUNK_V2,
  max_data_chunk_v3: MAX_DATA_CHUNK_V3,
  max_service_name_len: MAX_SERVICE_NAME_LEN,
  name_max: NAME_MAX,
  max_qrexec_cmd_len: MAX_QREXEC_CMD_LEN,
  vchan_base_port: VCHAN_BASE_PORT,
  max_clients: MAX_CLIENTS,
  data_port_min: DATA_PORT_MIN,
  data_port_max: DATA_PORT_MAX,
  header_bytes: HEADER_BYTES,
  exec_params_fixed_bytes: EXEC_PARAMS_FIXED_BYTES,
  ident_bytes: IDENT_BYTES,
  service_params_bytes: SERVICE_PARAMS_BYTES,
  peer_info_bytes: PEER_INFO_BYTES,
  exit_code_bytes: EXIT_CODE_BYTES,
  domain_name_v2_bytes: DOMAIN_NAME_V2_BYTES,
  domain_name_bytes: DOMAIN_NAME_BYTES,
  service_name_v2_bytes: SERVICE_NAME_V2_BYTES,
  trigger_v2_bytes: TRIGGER_V2_BYTES,
  trigger3_fixed_bytes: TRIGGER3_FIXED_BYTES,
  trigger4_fixed_bytes: TRIGGER4_FIXED_BYTES,
  policy_response_bytes_max: POLICY_RESPONSE_BYTES_MAX,
  exit_success: QREXEC_EXIT_SUCCESS,
  exit_fatal: QREXEC_EXIT_FATAL,
  exit_usage: QREXEC_EXIT_USAGE,
  exit_problem: QREXEC_EXIT_PROBLEM,
  exit_request_refused: QREXEC_EXIT_REQUEST_REFUSED,
  exit_service_not_found: QREXEC_EXIT_SERVICE_NOT_FOUND,
  exit_signal_base: QREXEC_EXIT_SIGNAL_BASE,
  exit_no_status: QREXEC_EXIT_NO_STATUS,
};

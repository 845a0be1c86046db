// The client side of a daemon socket (§7.2): what qrexec-client does, and what a daemon does
// toward another VM's daemon (and its own) to set up a call it allowed (§2.1 step 4).

import { join } from "node:path";
import { Connection } from "../io/connection.ts";
import {
  decodeExecParams,
  decodeHello,
  encodeExecCommand,
  encodeServiceConnect,
  frame,
  helloMessage,
  ProtocolError,
  type ExecParams,
  type FixedField,
} from "../protocol/codec.ts";
import {
  EXEC_PARAMS_FIXED_BYTES,
  MSG_SERVICE_CONNECT,
  PEER_INFO_BYTES,
  QREXEC_CLIENT_PROTOCOL_VERSION,
} from "../protocol/constants.ts";

/** Where the daemon of `target` (a name, `uuid:…` or the numeric id) listens. */
export function daemonSocketPath(socketDir: string, target: string): string {
  return join(socketDir, `qrexec.${target}`);
}

/** A connected daemon socket after the HELLO exchange (the daemon speaks first, §4.2). */
export async function connectDaemon(socketDir: string, target: string): Promise<Connection> {
  const connection = await Connection.connect(daemonSocketPath(socketDir, target));
  try {
    const hello = await connection.readMessage(PEER_INFO_BYTES);
    if (hello === null) throw new ProtocolError(`daemon for ${target} closed before HELLO`);
    const version = decodeHello(hello.header, hello.payload);
    if (version < QREXEC_CLIENT_PROTOCOL_VERSION) {
      throw new ProtocolError(
        `daemon for ${target} speaks protocol ${version}, ` +
          `at least ${QREXEC_CLIENT_PROTOCOL_VERSION} is needed`,
      );
    }
    connection.write(helloMessage(QREXEC_CLIENT_PROTOCOL_VERSION));
    return connection;
  } catch (error) {
    connection.close();
    throw error;
  }
}

/** The `{domain, port}` reply a daemon sends when it allocated the port (§7.2). */
async function readPortReply(connection: Connection, type: number): Promise<ExecParams> {
  const reply = await connection.readMessage(EXEC_PARAMS_FIXED_BYTES);
  if (reply === null)
    throw new ProtocolError(
      "daemon closed the connection without allocating " +
        "a port (it refused the request; its log says why)",
    );
  if (reply.header.type !== type || reply.header.len !== EXEC_PARAMS_FIXED_BYTES) {
    throw new ProtocolError(
      `unexpected daemon reply type 0x${reply.header.type.toString(16)} len ${reply.header.len}`,
    );
  }
  const { connectDomain, connectPort } = decodeExecParams(reply.payload);
  return { connectDomain, connectPort };
}

/** Sends EXEC_CMDLINE or JUST_EXEC with port 0 and returns the target's id and the data port. */
export async function requestExec(
  connection: Connection,
  type: number,
  connectDomain: number,
  command: string,
): Promise<ExecParams> {
  connection.write(frame(type, encodeExecCommand({ connectDomain, connectPort: 0 }, command)));
  return readPortReply(connection, type);
}

/**
 * Sends SERVICE_CONNECT for an allowed request. With port 0 (a call into dom0) the daemon
 * allocates the port and replies with it; otherwise it only forwards, and null is returned.
 */
export async function requestServiceConnect(
  connection: Connection,
  params: ExecParams,
  ident: FixedField,
): Promise<ExecParams | null> {
  connection.write(frame(MSG_SERVICE_CONNECT, encodeServiceConnect(params, ident)));
  if (params.connectPort !== 0) return null;
  return readPortReply(connection, MSG_SERVICE_CONNECT);
}

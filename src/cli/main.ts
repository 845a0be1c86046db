// The entry point of the single executable (`npm run dist`): one binary, many programs, chosen
// by the name it was started under (dist/ has a symlink per program, as busybox does). Each
// program module parses process.argv when it is imported, exactly as under bin/.
import { basename } from "node:path";

type Entry = () => Promise<unknown>;

const QVM_COPY: Entry = () => import("./qvm-copy.ts");

/** Programs on PATH (package.json `bin`), then the internal ones (src/install-paths.ts). */
const PROGRAMS: Record<string, Entry> = {
  qrx: () => import("./qrx.ts"),
  "qrexec-agent": () => import("./qrexec-agent.ts"),
  "qrexec-client": () => import("./qrexec-client.ts"),
  "qrexec-client-vm": () => import("./qrexec-client-vm.ts"),
  "qrexec-daemon": () => import("./qrexec-daemon.ts"),
  "qrexec-policy-daemon": () => import("./qrexec-policy-daemon.ts"),
  "qrexec-policy-exec": () => import("./qrexec-policy-exec.ts"),
  "qfile-agent": () => import("./qfile-agent.ts"),
  "qfile-unpacker": () => import("./qfile-unpacker.ts"),
  "qvm-copy": QVM_COPY,
  "qvm-copy-to-vm": QVM_COPY,
  "qvm-move": QVM_COPY,
  "qvm-move-to-vm": QVM_COPY,
  "qrx-admin": () => import("./qrx-admin.ts"),
  "qrx-vchan-peer": async () => (await import("../tools/vchan-peer.ts")).main(),
  "qrx-baseline-peer": async () => (await import("../../bench/baseline-peer.ts")).main(),
  "qrx-noop": async () => {},
};

// A login shell's "-name" and a path both reduce to the program's name.
const name = basename(process.argv0).replace(/^-/, "");
const entry = PROGRAMS[name];
if (entry === undefined) {
  process.stderr.write(
    `qrx: started as '${name}', which is none of its programs: ` +
      `${Object.keys(PROGRAMS).join(", ")}\n`,
  );
  process.exit(127);
}
if (name.startsWith("qvm-")) process.env.QRX_PROGRAM_NAME = name;
await entry();

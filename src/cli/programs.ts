// Every program the single executable can be (src/cli/main.ts): those on PATH (package.json
// `bin`; test/install/programs.test.ts keeps the lists and bin/ in step), then the internal
// ones (src/install-paths.ts). Each entry imports the program's module, which runs it.

type Entry = () => Promise<unknown>;

const QVM_COPY: Entry = () => import("./qvm-copy.ts");

export const PROGRAMS: Record<string, Entry> = {
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
  "qvm-run": () => import("./qvm-run.ts"),
  "qrx-admin": () => import("./qrx-admin.ts"),
  "qrx-vchan-peer": async () => (await import("../tools/vchan-peer.ts")).main(),
  "qrx-baseline-peer": async () => (await import("../bench/baseline-peer.ts")).main(),
  "qrx-noop": async () => {},
};

/** Programs that are shell scripts in bin/: `npm run dist` copies them beside the executable. */
export const SCRIPT_PROGRAMS = ["qvm-open-in-vm", "qvm-open-in-dvm"] as const;

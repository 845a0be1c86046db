// The lab's admin service process (src/lab/admin.ts), started detached by `qrx lab up --dir D`:
//   qrx-admin D
// It reads D/lab.json, writes D/admin.pid, logs to stderr (D/logs/admin.log) and exits 0 after a
// clean shutdown (SIGTERM, SIGINT or qrx.lab.Shutdown).
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { LabAdmin } from "../lab/admin.ts";
import type { LabConfig } from "../lab/config.ts";
import { LabLayout } from "../lab/layout.ts";
import { die, logger } from "./common.ts";

const PROGRAM = "qrx-admin";
const dir = process.argv[2];
if (dir === undefined) die(PROGRAM, "usage: qrx-admin STATE_DIR (started by qrx lab up)", 2);
const layout = new LabLayout(dir);
const log = logger(PROGRAM);

let config: LabConfig;
try {
  config = JSON.parse(readFileSync(layout.configFile, "utf8")) as LabConfig;
} catch (error) {
  die(
    PROGRAM,
    `cannot read ${layout.configFile}: ${error instanceof Error ? error.message : String(error)}`,
    1,
  );
}

writeFileSync(layout.pidFile, `${process.pid}\n`);
const admin = new LabAdmin(layout, config, log);
let failed = false;
admin.onShutdown = () => {
  if (admin.ownsLabDir()) rmSync(layout.pidFile, { force: true });
  process.exit(failed ? 1 : 0);
};

// A lab directory removed under us (rm -rf) and perhaps brought up again by another lab leaves
// this process without its lab. Its vchan broker would go on sweeping the same paths (refusing
// and removing the new lab's rendezvous sockets: calls hang), and its shutdown would remove the
// new lab's sockets. So it checks its pid file every second and, once that names someone else
// or nobody, ends with its whole process group (its domains), touching no file.
const OWNERSHIP_CHECK_MS = 1000;
setInterval(() => {
  if (!admin.ownsLabDir()) admin.abandon();
}, OWNERSHIP_CHECK_MS).unref();
for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"] as const)
  process.on(signal, () => void admin.shutdown());

try {
  await admin.up();
} catch (error) {
  log.warn(`lab failed to come up: ${error instanceof Error ? error.message : String(error)}`);
  failed = true;
  await admin.shutdown();
}

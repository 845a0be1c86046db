// The entry point of the single executable (`npm run dist`): one binary, many programs, chosen
// by the name it was started under (dist/ has a symlink per program, as busybox does). Each
// program module parses process.argv when it is imported, exactly as under bin/.
import { basename } from "node:path";
import { PROGRAMS } from "./programs.ts";

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

// Man pages made from the programs' own --help texts (one source of truth: a page cannot say
// something the help does not). The set-up writes them into share/man/man1, where package.json's
// `man` field points npm install -g, and where `MANPATH=$PWD/share/man:` finds them in a checkout.
import type { Command } from "commander";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import packageJson from "../../package.json" with { type: "json" };
import { BIN_DIR } from "../install-paths.ts";

/** Text made safe for roff: backslashes, leading control characters, hyphens of options. */
function roffText(line: string): string {
  const escaped = line.replaceAll("\\", "\\e").replaceAll("-", "\\-");
  return /^[.']/.test(escaped) ? `\\&${escaped}` : escaped;
}

/** A help text's sections ("Options:", "Examples:") as .SH, the rest kept as laid out. */
function roffBody(help: string): string[] {
  const out: string[] = [];
  let open = false;
  for (const line of help.replace(/\s+$/, "").split("\n")) {
    const section = /^([A-Z][A-Za-z ]*):$/.exec(line);
    if (section) {
      if (open) out.push(".fi");
      out.push(`.SH ${section[1]!.toUpperCase()}`, ".nf");
      open = true;
    } else {
      if (!open) out.push(".nf");
      open = true;
      out.push(roffText(line));
    }
  }
  if (open) out.push(".fi");
  return out;
}

/** A whole man(7) page: NAME from the help's description, then the help as it is. */
export function manPage(name: string, help: string, more: string[] = []): string {
  const lines = help.replace(/^\s+/, "").split("\n");
  const usage = lines[0]!.replace(/^usage:\s*/i, "");
  const description =
    lines
      .slice(1)
      .find((line) => line.trim() !== "")
      ?.trim() ?? name;
  // The description is the NAME line; the page goes on with what follows it.
  const rest = lines
    .slice(1)
    .join("\n")
    .replace(/^\s*[^\n]*\n/, "");
  return [
    `.TH ${name.toUpperCase()} 1 "" "qrx ${packageJson.version}" "qrx manual"`,
    ".SH NAME",
    `${roffText(name)} \\- ${roffText(description)}`,
    ".SH SYNOPSIS",
    ".nf",
    roffText(usage),
    ".fi",
    ...roffBody(rest),
    ...more,
    "",
  ].join("\n");
}

/** qrx's page: its own help, then every subcommand's help as a subsection. */
export function qrxManPage(root: Command): string {
  root.configureHelp({ helpWidth: 90 });
  const more: string[] = [".SH SUBCOMMANDS"];
  const visit = (command: Command, path: string) => {
    for (const sub of command.commands) {
      const full = `${path} ${sub.name()}`;
      sub.configureHelp({ helpWidth: 90 });
      more.push(
        `.SS ${roffText(full)}`,
        ".nf",
        ...sub.helpInformation().trimEnd().split("\n").map(roffText),
        ".fi",
      );
      visit(sub, full);
    }
  };
  visit(root, root.name());
  return manPage(root.name(), root.helpInformation(), more);
}

/** Writes qrx.1 and, from `PROGRAM --help`, a page for each of `programs`. */
export async function writeManPages(root: Command, dir: string, programs: string[]): Promise<void> {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "qrx.1"), qrxManPage(root));
  await Promise.all(
    programs.map(async (program) => {
      // Without the domain variables of the caller's shell: the defaults shown are the real ones.
      const env = Object.fromEntries(
        Object.entries(process.env).filter(([key]) => !/^(QRX_|QREXEC_|VCHAN_)/.test(key)),
      );
      Object.assign(env, { COLUMNS: "90", QRX_PROGRAM_NAME: program });
      const child = Bun.spawn([join(BIN_DIR, program), "--help"], {
        env,
        stdin: "ignore",
        stdout: "pipe",
      });
      const [help, code] = await Promise.all([new Response(child.stdout).text(), child.exited]);
      if (code !== 0 || help === "") throw new Error(`${program} --help failed (exit ${code})`);
      writeFileSync(join(dir, `${program}.1`), manPage(program, help));
    }),
  );
}

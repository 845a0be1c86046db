// `qrx completion bash|zsh`, run in the real shells: the scripts come from the command tree, so a
// command path typed so far completes to that command's subcommands and options.
import { expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const QRX = join(import.meta.dir, "..", "..", "bin", "qrx");
const haveZsh = Bun.spawnSync(["sh", "-c", "command -v zsh"]).exitCode === 0;

function shell(argv: string[]): { code: number; stdout: string; stderr: string } {
  const result = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe" });
  return {
    code: result.exitCode,
    stdout: result.stdout.toString(),
    stderr: result.stderr.toString(),
  };
}

/** What bash offers after `words` (the last one is the word being completed). */
function bashOffers(words: string[]): string[] {
  const quoted = words.map((word) => `'${word}'`).join(" ");
  const script = `source <('${QRX}' completion bash) || exit 9
COMP_WORDS=(${quoted}); COMP_CWORD=${words.length - 1}; _qrx_complete
printf '%s\\n' "\${COMPREPLY[@]}"
complete -p qrx`;
  const result = shell(["bash", "-c", script]);
  expect(result).toMatchObject({ code: 0, stderr: "" });
  return result.stdout.trimEnd().split("\n");
}

test("bash: top level, a group, a nested command's options, a prefix", () => {
  const top = bashOffers(["qrx", ""]);
  expect(top.slice(0, -1)).toEqual(
    expect.arrayContaining(["bench", "lab", "policy", "completion", "--version", "-V"]),
  );
  expect(top.at(-1)).toBe("complete -o default -F _qrx_complete qrx");
  expect(bashOffers(["qrx", "lab", ""])).toEqual(expect.arrayContaining(["up", "down", "status"]));
  expect(bashOffers(["qrx", "bench", "sweep", "--p"]).slice(0, -1)).toEqual(["--plot"]);
  // Options between the words do not lose the path; the hidden man-pages command is not offered.
  expect(bashOffers(["qrx", "lab", "--help", "u"]).slice(0, -1)).toEqual(["up"]);
  expect(bashOffers(["qrx", "m"]).slice(0, -1)).toEqual([""]);
});

test.skipIf(!haveZsh)("zsh: the entries handed to _describe carry descriptions", () => {
  // _describe and _files belong to zsh's completion system, which needs a terminal: stand-ins
  // print what they were given.
  const script = `compdef() { print -r -- "compdef $*"; }
_describe() { print -rl -- "\${(@P)4}"; }
_files() { print -r -- "_files"; }
source <('${QRX}' completion zsh) || exit 9
words=(qrx policy ''); CURRENT=3; _qrx`;
  const result = shell(["zsh", "-c", script]);
  expect(result).toMatchObject({ code: 0, stderr: "" });
  const lines = result.stdout.trimEnd().split("\n");
  expect(lines[0]).toBe("compdef _qrx qrx");
  expect(lines).toContain("-h:display help for command");
  expect(lines.some((line) => line.startsWith("lint:read the policy"))).toBe(true);
  expect(lines.at(-1)).toBe("_files");
});

test.skipIf(!haveZsh)(
  "zsh through a pty: TAB completes, loaded from $fpath or sourced",
  () => {
    const dir = mkdtempSync(join(tmpdir(), "qrx-zsh-"));
    try {
      writeFileSync(join(dir, "_qrx"), shell([QRX, "completion", "zsh"]).stdout);
      const driver = join(import.meta.dir, "..", "helpers", "zsh-complete.zsh");
      const typed = [
        "qrx pol",
        "qrx policy ",
        "qrx lab to",
        "qrx lab top ",
        "qrx bench sweep --sam",
        "--samples ",
      ];
      const fromFpath = shell(["zsh", "-f", driver, `fpath=(${dir} $fpath)`, ":", ...typed]);
      expect(fromFpath).toEqual({ code: 0, stdout: "OK\n", stderr: "" });
      const sourced = shell([
        "zsh",
        "-f",
        driver,
        ":",
        `source ${join(dir, "_qrx")}`,
        ...typed.slice(0, 2),
      ]);
      expect(sourced).toEqual({ code: 0, stdout: "OK\n", stderr: "" });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
  60_000,
);

test("an unknown shell is a usage error", () => {
  const result = shell([QRX, "completion", "fish"]);
  expect(result.code).toBe(1);
  expect(result.stderr).toContain(`"fish" is not bash or zsh`);
});

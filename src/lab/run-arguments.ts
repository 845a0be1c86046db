// `qrx run DOMAIN [--dir D] [-v] [--trace F] -- COMMAND...`: qrx's options may come after the
// domain too (commander passes everything after DOMAIN through, so that the command's own options
// are left alone); they are taken from before the `--`. Anything else there is a mistake we name.

export interface RunArguments {
  dir: string | undefined;
  verbose: boolean;
  trace: string | undefined;
  argv: string[];
}

const WHERE = "qrx run [--dir DIR] [-v] [--trace FILE] DOMAIN -- COMMAND [ARGS...]";

/** The command and qrx's options after DOMAIN, or what is wrong with them. */
export function splitRunArguments(words: string[]): RunArguments | string {
  const result: RunArguments = { dir: undefined, verbose: false, trace: undefined, argv: words };
  const end = words.indexOf("--");
  // Without `--` only a leading --dir is ours: the command is the rest, options and all.
  const leadingDir = words[0] === "--dir" ? 2 : words[0]?.startsWith("--dir=") ? 1 : 0;
  const ours = words.slice(0, end === -1 ? leadingDir : end);
  for (let index = 0; index < ours.length; index++) {
    const word = ours[index]!;
    if (word === "-v" || word === "--verbose") result.verbose = true;
    else if (word.startsWith("--dir=")) result.dir = word.slice("--dir=".length);
    else if (word === "--dir") {
      result.dir = ours[++index];
      if (result.dir === undefined) return `option '--dir <dir>' needs a directory: ${WHERE}`;
    } else if (word.startsWith("--trace=")) result.trace = word.slice("--trace=".length);
    else if (word === "--trace") {
      result.trace = ours[++index];
      if (result.trace === undefined) return `option '--trace <file>' needs a file: ${WHERE}`;
    } else if (end !== -1) {
      return `'${word}' before -- is not an option of qrx run; the command goes after --: ${WHERE}`;
    }
  }
  result.argv = end === -1 ? words.slice(ours.length) : words.slice(end + 1);
  return result;
}

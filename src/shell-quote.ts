// Quoting a word for /bin/sh the way upstream's Python tools do (`shlex.quote`), so a command line
// we build for a service reads exactly as upstream's would. Bun.$.escape quotes for sh too, but
// with double quotes and backslashes: the same words, different bytes on the wire.

/** `word` as one sh word: bare when it holds only safe characters, else in single quotes. */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

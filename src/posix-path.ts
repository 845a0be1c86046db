// node:path's posix join, resolve and dirname, for the modules `qrx run` loads before its
// command starts: Bun's node:path costs that start ~0.6 ms of CPU (~1 ms of wall time). Loops,
// not filter() or at(): JSC compiles each of those builtins at its first call, ~30-100 us.
// test/posix-path.test.ts holds them to node:path's results.

/**
 * `path`'s segments without `.` and empty ones, each `..` cancelling the one before it (kept when
 * there is none, if ABOVEROOT: a relative path may climb).
 */
function segments(path: string, aboveRoot: boolean): string[] {
  const kept: string[] = [];
  for (const segment of path.split("/")) {
    if (segment === "" || segment === ".") continue;
    if (segment !== "..") kept.push(segment);
    else if (kept.length > 0 && kept[kept.length - 1] !== "..") kept.pop();
    else if (aboveRoot) kept.push("..");
  }
  return kept;
}

function normalize(path: string): string {
  const absolute = path.startsWith("/");
  const trailing = path.endsWith("/");
  const body = segments(path, !absolute).join("/");
  if (body === "") return absolute ? "/" : trailing ? "./" : ".";
  return (absolute ? "/" : "") + body + (trailing ? "/" : "");
}

export function join(...paths: string[]): string {
  let joined = "";
  for (const path of paths) if (path !== "") joined = joined === "" ? path : `${joined}/${path}`;
  return joined === "" ? "." : normalize(joined);
}

export function resolve(...paths: string[]): string {
  let resolved = "";
  // From the last path back to the first absolute one; the working directory only if none is.
  for (let index = paths.length - 1; index >= -1 && !resolved.startsWith("/"); index--) {
    const path = index >= 0 ? paths[index]! : process.cwd();
    if (path !== "") resolved = `${path}/${resolved}`;
  }
  const absolute = resolved.startsWith("/");
  const body = segments(resolved, !absolute).join("/");
  return absolute ? `/${body}` : body || ".";
}

export function dirname(path: string): string {
  // The last slash before the last name, trailing slashes skipped; node:path keeps a `//` root.
  let end = -1;
  let name = false;
  for (let index = path.length - 1; index >= 1 && end === -1; index--) {
    if (path[index] !== "/") name = true;
    else if (name) end = index;
  }
  if (end === -1) return path.startsWith("/") ? "/" : ".";
  return path.startsWith("/") && end === 1 ? "//" : path.slice(0, end);
}

#!/bin/sh
# Makes a fresh clone runnable: Bun (npm package `bun`), Zig (PyPI package `ziglang`, pinned in
# .zig-version, installed under .tools/zig) and the native library. Idempotent and quick on a
# ready tree: each step checks before it acts, and `zig build` is cached.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

# npm runs this as the package's `prepare` (so `npm install -g` of a checkout sets it up and
# links its man pages), also inside the `npm ci` below: that nested run has nothing to do.
[ -z "${QRX_BOOTSTRAPPING:-}" ] || exit 0
QRX_BOOTSTRAPPING=1 && export QRX_BOOTSTRAPPING

zig_version=$(cat .zig-version)
zig="$root/.tools/zig/ziglang/zig"

say() { printf 'qrx setup: %s\n' "$*" >&2; }

if [ -L node_modules ]; then
    # A worktree sharing another checkout's dependencies: `npm ci` would empty that checkout's
    # node_modules through the link (it clears the directory first). Their owner keeps them.
    [ -x node_modules/.bin/bun ] || { say "node_modules links to a tree without Bun: set that one up"; exit 1; }
elif [ ! -x node_modules/.bin/bun ] || [ ! -d node_modules/commander ] || [ package.json -nt node_modules/.package-lock.json ]; then
    command -v npm >/dev/null 2>&1 || { say "npm is needed to install Bun (apt-get install npm)"; exit 1; }
    say "installing Bun and JS dependencies with npm"
    # Under `npm install -g` (this script as `prepare`) npm's settings for the global install
    # are in the environment; the project's own dependencies install locally.
    unset npm_config_global npm_config_prefix npm_config_location
    if [ -f package-lock.json ]; then npm ci --no-audit --no-fund --loglevel=error >&2
    else npm install --no-audit --no-fund --loglevel=error >&2; fi
fi

if [ ! -x "$zig" ] || [ "$("$zig" version 2>/dev/null)" != "$zig_version" ]; then
    say "installing Zig $zig_version from PyPI (ziglang) into .tools/zig"
    py=$(command -v python3 || command -v python || true)
    [ -n "$py" ] || { say "python3 with pip is needed to install Zig"; exit 1; }
    rm -rf .tools/zig
    # pip warns about running as root even with --target (nothing system-wide is touched); the
    # variable silences it and older pips ignore it.
    PIP_ROOT_USER_ACTION=ignore "$py" -m pip install --quiet --disable-pip-version-check \
        --no-warn-script-location --target .tools/zig "ziglang==$zig_version" >&2
    [ "$("$zig" version)" = "$zig_version" ] || { say "Zig install failed"; exit 1; }
fi

# Zig is silent when stderr is not a terminal, and a first build takes about a minute: a ticker
# says what is going on, from the 2nd second on (a cached build never shows it).
ticker() {
    # Its sleep is killed with it: an orphan sleep would hold our stderr open for seconds.
    trap 'kill "$nap" 2>/dev/null; exit 0' TERM
    elapsed=0
    for step in 2 10; do
        while :; do
            sleep "$step" & nap=$!
            wait "$nap"
            elapsed=$((elapsed + step))
            if [ "$elapsed" -eq 2 ]; then
                say "building the native library with Zig (about a minute the first time)"
                break
            fi
            say "still building the native library (${elapsed} s)"
        done
    done
}
ticker & ticker_pid=$!
# ReleaseFast for runs and benchmarks; `zig build test` builds its own Debug test binaries.
status=0
"$zig" build -Doptimize=ReleaseFast || status=$?
kill "$ticker_pid" 2>/dev/null || true
wait "$ticker_pid" 2>/dev/null || true
[ "$status" -eq 0 ] || { say "zig build failed (exit $status)"; exit "$status"; }

# Man pages from the help texts (src/cli/man-pages.ts), rewritten when a command line changed.
man1=share/man/man1
newer() { find src/cli package.json -newer "$man1/qrx.1" -print | head -n 1; }
if [ ! -f "$man1/qrx.1" ] || [ -n "$(newer)" ]; then
    say "writing man pages into $man1"
    node_modules/.bin/bun src/cli/qrx.ts man-pages "$man1" >&2
fi

# Start-up bundles for the programs in bin/ (scripts/bundle.ts; only the stale ones are rebuilt).
node_modules/.bin/bun scripts/bundle.ts

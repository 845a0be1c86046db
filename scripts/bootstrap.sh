#!/bin/sh
# Makes a fresh clone runnable: Bun (npm package `bun`), Zig (PyPI package `ziglang`, pinned in
# .zig-version, installed under .tools/zig) and the native library. Idempotent and quick on a
# ready tree: each step checks before it acts, and `zig build` is cached.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

zig_version=$(cat .zig-version)
zig="$root/.tools/zig/ziglang/zig"

say() { printf 'qrx setup: %s\n' "$*" >&2; }

if [ ! -x node_modules/.bin/bun ] || [ ! -d node_modules/commander ] || [ package.json -nt node_modules/.package-lock.json ]; then
    command -v npm >/dev/null 2>&1 || { say "npm is needed to install Bun (apt-get install npm)"; exit 1; }
    say "installing Bun and JS dependencies with npm"
    if [ -f package-lock.json ]; then npm ci --no-audit --no-fund --loglevel=error >&2
    else npm install --no-audit --no-fund --loglevel=error >&2; fi
fi

if [ ! -x "$zig" ] || [ "$("$zig" version 2>/dev/null)" != "$zig_version" ]; then
    say "installing Zig $zig_version from PyPI (ziglang) into .tools/zig"
    py=$(command -v python3 || command -v python || true)
    [ -n "$py" ] || { say "python3 with pip is needed to install Zig"; exit 1; }
    rm -rf .tools/zig
    "$py" -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
        --target .tools/zig "ziglang==$zig_version" >&2
    [ "$("$zig" version)" = "$zig_version" ] || { say "Zig install failed"; exit 1; }
fi

# ReleaseFast for runs and benchmarks; `zig build test` builds its own Debug test binaries.
"$zig" build -Doptimize=ReleaseFast

# Start-up bundles for the programs in bin/ (scripts/bundle.ts; only the stale ones are rebuilt).
node_modules/.bin/bun scripts/bundle.ts

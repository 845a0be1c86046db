# Sourced by the launchers in bin/ with $program and $here set: runs src/cli/$program.ts with
# Bun, bootstrapping first on a fresh clone. exec keeps the PID, so signals reach the program.
root="${here%/*}"
bun="$root/node_modules/.bin/bun"
if [ ! -x "$bun" ] || [ ! -f "$root/zig-out/lib/libqrx.so" ]; then
    sh "$root/scripts/bootstrap.sh" >&2 || exit 1
fi
exec "$bun" "$root/src/cli/$program.ts" "$@"

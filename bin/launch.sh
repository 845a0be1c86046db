# Sourced by the launchers in bin/ with $program and $here set: runs src/cli/$program.ts (or its
# bundle) with Bun, bootstrapping first on a fresh clone. exec keeps the PID, so signals reach
# the program.
# $here is bin/ as the launcher found it: without readlink when $0 is the launcher itself (a
# fork less at every start), so possibly relative or through a symlinked directory.
root=$here/..
# Upstream's clients refuse a closed fd 0, 1 or 2 (spec §13.21). Checked here because Bun
# reopens closed fds 0-2 as /dev/null before any JavaScript runs. /proc/$$/fd is this shell's.
case $program in
qrexec-client | qrexec-client-vm)
    for fd in 0 1 2; do
        if [ -d "/proc/$$/fd" ] && [ ! -L "/proc/$$/fd/$fd" ]; then
            echo "$program: File descriptor $fd is closed, cannot continue" >&2
            exit 125
        fi
    done
    ;;
esac
bun="$root/node_modules/.bin/bun"
if [ ! -x "$bun" ] || [ ! -f "$root/zig-out/lib/libqrx.so" ]; then
    sh "$root/scripts/bootstrap.sh" >&2 || exit 1
fi
# The prebuilt bundle (scripts/bundle.ts) only while its check finds no input newer than it and
# the tree where it was built; else the sources, never stale code. QRX_BUNDLE=off: the sources.
bundle="$root/bundle/$program.js" check="$root/bundle/$program.check.sh"
if [ "${QRX_BUNDLE-}" != off ] && [ -f "$bundle" ] && [ -f "$check" ] && . "$check"; then
    # A help option alone (Bun drops a `--` before it) prints the text the check recorded from
    # this bundle, without starting Bun: ~2 ms instead of 15-40.
    case $# in
    1) replay_help "$1" ;;
    2) [ "$1" = -- ] && replay_help "$2" ;;
    esac
    exec "$bun" "$bundle" "$@"
fi
exec "$bun" "$root/src/cli/$program.ts" "$@"

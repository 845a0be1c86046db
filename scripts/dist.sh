#!/bin/sh
# `npm run dist`: qrx as one executable. dist/qrx is `bun build --compile` of src/cli/main.ts;
# every other program (qrexec-*, qvm-*, qfile-*) is a symlink to it, chosen by argv[0], but for
# the shell scripts of bin/ (qvm-open-in-*), copied as they are. Beside
# it: libqrx.so (loaded with dlopen, so it cannot be embedded) and share/qrx/lab (the default
# lab and its services, which domains run as files). Move the directory anywhere; PATH=dist:$PATH.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=${1:-dist}
case "$out" in /*) ;; *) out="$root/$out" ;; esac

sh scripts/bootstrap.sh
rm -rf "$out"
mkdir -p "$out/share/qrx/lab" "$out/share/man"
node_modules/.bin/bun build --compile --minify-whitespace src/cli/main.ts --outfile "$out/qrx" >&2
cp zig-out/lib/libqrx.so "$out/libqrx.so"
cp src/lab/default-lab.toml "$out/share/qrx/lab/"
cp -Rp src/lab/services "$out/share/qrx/lab/services"
cp -Rp share/man/man1 "$out/share/man/man1"
mkdir -p "$out/libexec" && cp libexec/qrx-domain-ns "$out/libexec/"
names=$(node_modules/.bin/bun -e \
    'console.log(Object.keys(require("./package.json").bin).join(" "))')
scripts=$(node_modules/.bin/bun -e \
    'console.log(require("./src/cli/programs.ts").SCRIPT_PROGRAMS.join(" "))')
for name in $names; do
    case " $scripts " in
    *" $name "*) cp bin/"$name" "$out/$name" ;;
    *) [ "$name" = qrx ] || ln -s qrx "$out/$name" ;;
    esac
done
printf 'qrx dist: %s (%s programs)\n' "$out" "$(echo $names | wc -w)" >&2

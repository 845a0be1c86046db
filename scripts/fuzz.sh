#!/bin/sh
# `npm run fuzz [-- --seconds N | --execs N] [harness...]`: runs every fuzz harness (or those
# named) for N seconds each (default 60, or QRX_FUZZ_SECONDS): the Zig ones coverage-guided under
# AFL++ (`zig build fuzz`), the TypeScript ones with fast-check (scripts/fuzz-ts.ts). `--execs N`
# runs each Zig harness for about N executions instead (the TypeScript ones keep the time).
# Prints a JSON line per harness (executions, executions/s, failures); any crashing or failing
# input is kept under test/fuzz/corpus/<harness>/, where `npm test` replays it. Exits 1 when a
# harness failed. AFL++ is installed with apt-get when missing (as root); `npm test` never needs it.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
say() { printf 'qrx fuzz: %s\n' "$*" >&2; }

seconds=${QRX_FUZZ_SECONDS:-60}
execs=""
only=""
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds=$2; shift 2 ;;
        --seconds=*) seconds=${1#--seconds=}; shift ;;
        --execs) execs=$2; shift 2 ;;
        --execs=*) execs=${1#--execs=}; shift ;;
        -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) only="$only $1"; shift ;;
    esac
done
case "$seconds" in
    ''|*[!0-9]*|0) say "--seconds needs a whole number of seconds above 0"; exit 2 ;;
esac
case "$execs" in *[!0-9]*|0) say "--execs needs a whole number above 0"; exit 2 ;; esac
if [ -n "$execs" ]; then budget="-E $execs"; else budget="-V $seconds"; fi
wanted() { [ -z "$only" ] || case " $only " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

sh scripts/bootstrap.sh
zig="$root/.tools/zig/ziglang/zig"

if ! command -v afl-fuzz >/dev/null 2>&1 || ! command -v afl-clang-fast >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing AFL++ (Debian package afl++)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y afl++ >&2 ||
            { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y afl++ >&2; }
    else
        say "AFL++ is missing (afl-fuzz, afl-clang-fast): run 'apt-get install afl++' as root"
        exit 1
    fi
fi

say "building the AFL++ targets (zig build fuzz)"
"$zig" build fuzz
runs="$root/zig-out/fuzz-runs"
mkdir -p "$runs"
failed=0

# Copies AFL++'s crashes and hangs of harness $1 into its corpus, named by content.
keep_findings() {
    for found in "$runs/$1/default/crashes"/id:* "$runs/$1/default/hangs"/id:*; do
        [ -f "$found" ] || continue
        kind=crash
        case "$found" in */hangs/*) kind=hang ;; esac
        name="$kind-$(sha256sum "$found" | cut -c1-16)"
        cp "$found" "test/fuzz/corpus/$1/$name"
        say "$1: kept test/fuzz/corpus/$1/$name (replay: zig-out/fuzz/$1 < that file)"
    done
}

stat_of() { sed -n "s/^$1 *: *//p" "$runs/$2/default/fuzzer_stats"; }

for target in zig-out/fuzz/*; do
    name=$(basename "$target")
    wanted "$name" || continue
    if [ -z "$(ls "test/fuzz/corpus/$name" 2>/dev/null)" ]; then
        say "$name: no seed in test/fuzz/corpus/$name"
        exit 1
    fi
    rm -rf "${runs:?}/$name"
    say "$name: AFL++ ($budget)"
    # shellcheck disable=SC2086 # $budget is an option and its value
    AFL_NO_UI=1 AFL_NO_AFFINITY=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 \
        AFL_SKIP_CRASHES=1 afl-fuzz -i "test/fuzz/corpus/$name" -o "$runs/$name" $budget \
        -- "$target" > "$runs/$name.log" 2>&1 || {
        say "$name: afl-fuzz failed, see $runs/$name.log"
        tail -5 "$runs/$name.log" >&2
        exit 1
    }
    crashes=$(stat_of saved_crashes "$name")
    hangs=$(stat_of saved_hangs "$name")
    printf '{"name":"%s","executions":%s,"seconds":%s,"executionsPerSecond":%s,"failures":%s}\n' \
        "$name" "$(stat_of execs_done "$name")" "$(stat_of run_time "$name")" \
        "$(stat_of execs_per_sec "$name" | cut -d. -f1)" "$((crashes + hangs))" |
        tee "$runs/$name.json"
    if [ "$((crashes + hangs))" -gt 0 ]; then failed=1; keep_findings "$name"; fi
done

# The unpack harness's scratch directory outlives a target that AFL++ killed; keep live ones.
# AFL++ can return while its fork server is still going away: each gets up to 2 s to end.
for scratch in /dev/shm/qrx-fuzz-unpack-* /tmp/qrx-fuzz-unpack-*; do
    [ -d "$scratch" ] || continue
    pid=${scratch##*-} tries=0
    while kill -0 "$pid" 2>/dev/null && [ "$tries" -lt 20 ]; do
        sleep 0.1
        tries=$((tries + 1))
    done
    kill -0 "$pid" 2>/dev/null || rm -rf "$scratch"
done

# The data pump's seeded model test (zig/pump/data_model_test.zig), random seeds for the time.
if wanted model; then
    say "model: the data pump's model test, random seeds (${seconds} s)"
    if .tools/zig/ziglang/zig build model -Dseconds="$seconds" > "$runs/model.log" 2>&1; then
        printf '{"name":"model","seconds":%s,"failures":0}\n' "$seconds" | tee "$runs/model.json"
    else
        failed=1
        say "model: a run failed; replay its seed: zig build model -Dseed=SEED -Dseconds=0"
        tail -20 "$runs/model.log" >&2
    fi
fi

ts_harnesses=""
for name in ts-codec ts-hello ts-config ts-policy; do
    wanted "$name" && ts_harnesses="$ts_harnesses $name"
done
if [ -n "$ts_harnesses" ]; then
    # shellcheck disable=SC2086 # one argument per harness
    # Not through a pipe: the exit status is the runner's.
    node_modules/.bin/bun scripts/fuzz-ts.ts --seconds "$seconds" $ts_harnesses > "$runs/ts.jsonl" ||
        failed=1
    cat "$runs/ts.jsonl"
fi
say "results in $runs/*.json*, AFL++ output in $runs/<harness>/"
[ "$failed" = 0 ] || say "failing inputs were kept under test/fuzz/corpus/ (see above)"
exit "$failed"

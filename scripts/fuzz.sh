#!/usr/bin/env bash
# Bounded libFuzzer runs of every wire decoder and file reader (Fuzz/README.md): builds the fuzz
# package with -sanitize=fuzzer,address, replays Fuzz/regressions/<target>/ (each must pass), then
# fuzzes each target for a fixed time from Fuzz/corpus/<target>/. New inputs go to a scratch
# directory under Fuzz/.build, so the repository is not touched; a crash, leak, timeout or
# out-of-memory is saved under Fuzz/findings/ and makes the script exit 1.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

usage() {
  cat <<'EOF'
usage: scripts/fuzz.sh [--seconds N] [--target NAME]... [--jobs N] [--release] [--merge] [--write-seeds]

  --seconds N     fuzz each target for N seconds (default 60; 0: only replay the regressions)
  --target NAME   only this target (repeatable; default: all; `--target list` lists them)
  --jobs N        targets fuzzed at once (default 1; this machine has 2 cores)
  --release       build with -c release: 2-3x the executions per second, 4-5x the build time
  --merge         afterwards, add the new inputs that reach new coverage to Fuzz/corpus/<target>
  --write-seeds   regenerate the seed-* files of Fuzz/corpus from the library's encoders, then stop
EOF
}

seconds=60 jobs=1 config=debug merge=0 write_seeds=0
targets=()
while (( $# )); do
  case "$1" in
    --seconds) seconds=${2:?--seconds needs a number}; shift 2 ;;
    --target) targets+=("${2:?--target needs a name}"); shift 2 ;;
    --jobs) jobs=${2:?--jobs needs a number}; shift 2 ;;
    --release) config=release; shift ;;
    --merge) merge=1; shift ;;
    --write-seeds) write_seeds=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "fuzz.sh: unknown option '$1'" >&2; usage >&2; exit 64 ;;
  esac
done
[[ "$seconds" =~ ^[0-9]+$ && "$jobs" =~ ^[1-9][0-9]*$ ]] || { echo "fuzz.sh: --seconds and --jobs take whole numbers" >&2; exit 64; }

echo "==> building the fuzz package ($config, -sanitize=fuzzer,address)"
build_start=$(date +%s)
# Linking with ASan makes gold warn once per ASan helper symbol; those lines are noise.
set +e
( cd Fuzz && swift build -c "$config" --product srfuzz -Xswiftc -sanitize=fuzzer,address 2>&1 ) \
  | grep -v "Cannot export local symbol"
status=${PIPESTATUS[0]}
set -e
(( status == 0 )) || { echo "fuzz.sh: the build failed (exit $status)" >&2; exit 1; }
bin="$root/Fuzz/.build/$config/srfuzz"
[[ -x "$bin" ]] || { echo "fuzz.sh: the build did not produce $bin" >&2; exit 1; }
echo "built in $(( $(date +%s) - build_start )) s: $bin"

all=$(SRFUZZ_LIST=1 "$bin")
if [[ "${targets[0]:-}" == list ]]; then echo "$all"; exit 0; fi
if (( write_seeds )); then
  SRFUZZ_WRITE_SEEDS="$root/Fuzz/corpus" "$bin"
  echo "seeds written to Fuzz/corpus/<target>/seed-*"
  exit 0
fi
if (( ${#targets[@]} == 0 )); then
  read -r -a targets <<< "$(echo $all)"
fi
for t in "${targets[@]}"; do
  grep -qx -- "$t" <<< "$all" || { echo "fuzz.sh: unknown target '$t'; targets: $(echo $all)" >&2; exit 64; }
done

work="$root/Fuzz/.build/fuzz-run"
rm -rf "$work"
mkdir -p "$work/new" "$work/logs" "$work/rc" "$root/Fuzz/findings"
# Readers that take only a path get a scratch file here; tmpfs when there is one.
scratch=$(mktemp -d /dev/shm/srfuzz.XXXXXX 2>/dev/null || mktemp -d)
trap 'rm -rf "$scratch"' EXIT
export SRFUZZ_TMPDIR="$scratch"
# Swift's own crash backtracer reads the crashed process's memory, which ASan reports as a second,
# bogus error; without it libFuzzer prints the (symbolised) stack of the trap itself.
export SWIFT_BACKTRACE=enable=no
# Bounds for every run: an input that makes a decoder allocate over 1 GiB at once, hold 2 GiB
# or spend 10 s is a finding, not a slow run.
limits=(-rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10)

# The most specific line saying why a run stopped.
reason() {
  local pattern
  for pattern in '(Fatal error|Precondition failed|Assertion failed): .{0,90}' 'Swift runtime failure: [a-z ]+' 'ERROR: (Address|Leak)Sanitizer: [a-z -]+' \
                 'ERROR: libFuzzer: [a-z -]+'; do
    grep -m1 -oE "$pattern" "$1" && return 0
  done
  return 1
}

failed=0
echo
echo "==> replaying Fuzz/regressions"
for t in "${targets[@]}"; do
  shopt -s nullglob
  inputs=("$root/Fuzz/regressions/$t"/*)
  shopt -u nullglob
  (( ${#inputs[@]} )) || continue
  if SRFUZZ_TARGET="$t" "$bin" "${limits[@]}" -artifact_prefix="$root/Fuzz/findings/$t-" "${inputs[@]}" \
      > "$work/logs/$t-regressions.log" 2>&1; then
    echo "$t: ${#inputs[@]} input(s) pass"
  else
    echo "$t: a regression input fails again ($(reason "$work/logs/$t-regressions.log" || echo "see the log")):"
    echo "    ${work#"$root/"}/logs/$t-regressions.log"
    failed=1
  fi
done

# --seconds 0: replay only (libFuzzer would read -max_total_time=0 as "no limit").
if (( seconds == 0 )); then
  (( failed )) && { echo "fuzz.sh: a regression input fails again"; exit 1; }
  echo "fuzz.sh: regressions pass (no fuzzing with --seconds 0)"
  exit 0
fi

fuzz_one() {
  local t=$1 start rc=0
  mkdir -p "$work/new/$t"
  start=$(date +%s)
  # New inputs go to the first directory (scratch); the committed corpus is only read.
  SRFUZZ_TARGET="$t" "$bin" "${limits[@]}" -max_total_time="$seconds" -print_final_stats=1 \
    -artifact_prefix="$root/Fuzz/findings/$t-" "$work/new/$t" "$root/Fuzz/corpus/$t" \
    > "$work/logs/$t.log" 2>&1 || rc=$?
  echo "$rc $(( $(date +%s) - start ))" > "$work/rc/$t"
}

echo
echo "==> fuzzing ${#targets[@]} target(s), $seconds s each, $jobs at a time"
for t in "${targets[@]}"; do
  while (( $(jobs -rp | wc -l) >= jobs )); do wait -n || true; done
  fuzz_one "$t" &
done
wait

echo
printf '%-14s %5s %10s %8s %6s %6s %6s %6s  %s\n' target s execs exec/s cov ft corpus rss_mb result
for t in "${targets[@]}"; do
  log="$work/logs/$t.log"
  read -r rc took < "$work/rc/$t"
  last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
  field() { sed -nE "s/.* $1: ([0-9]+).*/\1/p" <<< "$last"; }
  stat() { sed -nE "s/^stat::$1: *([0-9]+).*/\1/p" "$log" | tail -n 1; }
  corpus=$(sed -nE 's/.* corp: ([0-9]+)\/.*/\1/p' <<< "$last")
  artifacts=$(sed -nE 's/.*Test unit written to (.*)$/\1/p' "$log")
  result=ok
  if [[ "$rc" != 0 || -n "$artifacts" ]]; then
    result="FOUND ($(reason "$log" || echo "exit $rc"))"
    failed=1
  fi
  printf '%-14s %5s %10s %8s %6s %6s %6s %6s  %s\n' "$t" "$took" "$(stat number_of_executed_units)" \
    "$(stat average_exec_per_sec)" "$(field cov)" "$(field ft)" "$corpus" "$(stat peak_rss_mb)" "$result"
  for a in $artifacts; do
    echo "    input saved: ${a#"$root/"}"
    echo "    reproduce:   SRFUZZ_TARGET=$t ${bin#"$root/"} ${a#"$root/"}"
  done
done
echo "logs: ${work#"$root/"}/logs; new inputs: ${work#"$root/"}/new (not committed)"

if (( merge )); then
  echo
  echo "==> merging inputs with new coverage into Fuzz/corpus"
  for t in "${targets[@]}"; do
    before=$(ls "$root/Fuzz/corpus/$t" | wc -l)
    SRFUZZ_TARGET="$t" "$bin" "${limits[@]}" -merge=1 "$root/Fuzz/corpus/$t" "$work/new/$t" \
      > "$work/logs/$t-merge.log" 2>&1 || { echo "$t: merge failed (see $work/logs/$t-merge.log)"; failed=1; }
    echo "$t: $before -> $(ls "$root/Fuzz/corpus/$t" | wc -l) inputs"
  done
  du -sh "$root/Fuzz/corpus"
fi

if (( failed )); then
  echo
  echo "fuzz.sh: FINDINGS — inputs are in Fuzz/findings/; fix the decoder, then move the input to"
  echo "Fuzz/regressions/<target>/ so that every run replays it (Fuzz/README.md)."
  exit 1
fi
echo "fuzz.sh: no findings"

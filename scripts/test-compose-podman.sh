#!/usr/bin/env bash
# End-to-end test of the compose deployment under podman (scripts/compose-podman.sh): brings it up
# on a scratch copy of compose/ (its own .env with random passwords, a project name and free
# loopback ports of its own), pushes one real job through the producer container with the
# matrix and vector on standard input and y on standard output, checks y against numpy, reads
# the aggregator's log, and tears down exactly what it started (containers and volumes of its
# project), also on failure.
#
#   bash scripts/test-compose-podman.sh          # or: SR_TEST_PODMAN=1 bash scripts/test.sh
#
# Not part of CI by default: the first run installs podman, debootstraps a base image and builds
# two images (~7 min on 2 cores) and the release binaries (~12 min); later runs reuse the images
# in SR_PODMAN_STATE (default /tmp/sr-compose-podman) and take ~2 min. Needs root and numpy.
#
# The check is independent of the code under test: with explicit partitions p = q =
# (0, -6, -12, -18), the complete result must equal bit for bit the fixed-point product of the
# chunks that scripts/numpy_reference.py's split computes in integer arithmetic, and lie within
# the printed bound of numpy's float64 A·x.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
started=$(date +%s.%N)
fail() { printf 'test-compose-podman: FAIL: %s\n' "$*" >&2; exit 1; }
note() { printf 'test-compose-podman: %s (%s s)\n' "$*" "$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')" >&2; }

[[ $(id -u) -eq 0 ]] || fail "run as root (podman and apt-get)"
python3 -c 'import numpy' 2>/dev/null || fail "numpy missing: python3 -m pip install numpy==2.4.6 (scripts/install-system-deps.sh does)"

tmp=$(mktemp -d /tmp/sr-podman-test.XXXXXX)
copy=$tmp/copy
project=sr-podman-test-$$
cp_compose() {
  mkdir -p "$copy/compose" "$copy/scripts"
  cp compose/compose.yaml compose/Dockerfile compose/rabbitmq.conf compose/setup.sh compose/.env.example "$copy/compose/"
  cp scripts/rabbitmq-users.sh scripts/rabbitmqctl.sh "$copy/scripts/"
}
cp_compose
cli=(bash "$root/scripts/compose-podman.sh" --compose-dir "$copy/compose")

# Tear down only this test's project (containers by label/name, its volumes), whatever happened.
cleanup() {
  local rc=$?
  trap - EXIT
  if ((rc != 0)) && [[ -f $tmp/env-ok ]]; then
    echo "----- aggregator log (last 30 lines) -----" >&2
    "${cli[@]}" logs aggregator --tail 30 >&2 2>&1 || true
  fi
  "${cli[@]}" down -v >&2 || echo "test-compose-podman: warning: down failed; remove the containers of project $project by hand" >&2
  rm -rf -- "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Free loopback ports (bind test), distinct, below the ephemeral range.
read -r amqps mgmt epmd dist < <(python3 - <<'PY'
import random, socket
picked = []
while len(picked) < 4:
    p = random.randint(20000, 31999)
    if p in picked:
        continue
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
        picked.append(p)
    except OSError:
        pass
    finally:
        s.close()
print(*picked)
PY
)
{
  for role in PRODUCER CONSUMER AGGREGATOR ADMIN MONITOR; do
    printf 'SR_%s_PASSWORD=%s\n' "$role" "$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
  done
  printf 'COMPOSE_PROJECT_NAME=%s\nSR_AMQPS_HOST_PORT=%s\nSR_MGMT_HOST_PORT=%s\n' "$project" "$amqps" "$mgmt"
} >"$copy/compose/.env"
chmod 600 "$copy/compose/.env"
export SR_PODMAN_EPMD_PORT=$epmd SR_PODMAN_DIST_PORT=$dist
touch "$tmp/env-ok"
note "project $project, ports amqps $amqps, management $mgmt, epmd $epmd, distribution $dist"

# ---------------------------------------------------------------- up
"${cli[@]}" up --consumers 2 || fail "compose-podman.sh up failed"
note "up"
ps=$("${cli[@]}" ps)
for c in rabbitmq-1 aggregator-1 consumer-1 consumer-2; do
  grep -q "^$project-${c}[[:space:]]*Up" <<<"$ps" || fail "container $project-$c is not up:
$ps"
done

# Host networking: every socket of the broker listens on 127.0.0.1 only.
listening=$(ss -Htln | awk '{ print $4 }')
for p in "$amqps" "$mgmt" "$epmd" "$dist"; do
  mine=$(grep -E ":$p\$" <<<"$listening" || true)
  [[ -n $mine ]] || fail "nothing listens on port $p"
  # epmd adds the IPv6 loopback beside the address it is given; both are loopback.
  if grep -vqE "^(127\.0\.0\.1|\[::1\]):$p\$" <<<"$mine"; then fail "port $p is not loopback-only: $mine"; fi
done
note "broker listens on loopback only (amqps, management, epmd, distribution)"

# ---------------------------------------------------------------- one job
python3 - "$tmp" <<'PY'
import sys
import numpy as np
rng = np.random.default_rng(20260207)
np.save(f"{sys.argv[1]}/A.npy", rng.uniform(-1, 1, (256, 192)))
np.save(f"{sys.argv[1]}/x.npy", rng.uniform(-1, 1, 192))
PY
parts=0,-6,-12,-18
# A long deadline: the first job of a new matrix waits for its preparation (README).
"${cli[@]}" job --matrix "$tmp/A.npy" --vector "$tmp/x.npy" --name podman-test --deadline 60s --out "$tmp/y.npy" \
  -- --json --partition-a "$parts" --partition-x "$parts" 2>"$tmp/job.err" || { cat "$tmp/job.err" >&2; fail "the job failed"; }
cat "$tmp/job.err" >&2
note "job done"
[[ -s $tmp/y.npy ]] || fail "no y came out of the producer container"

python3 - "$tmp" "$root/scripts" "$parts" <<'PY' || fail "y does not match the numpy reference"
import json, sys
import numpy as np
tmp, scripts, parts = sys.argv[1], sys.argv[2], [int(v) for v in sys.argv[3].split(",")]
sys.path.insert(0, scripts)
from numpy_reference import chunks  # the independent sign-magnitude split (METHOD.md §2)

a, x, y = np.load(f"{tmp}/A.npy"), np.load(f"{tmp}/x.npy"), np.load(f"{tmp}/y.npy")
lines = [json.loads(l) for l in open(f"{tmp}/job.err") if l.startswith("{")]
outputs = [l for l in lines if l.get("type") == "output"]
assert outputs, "no output lines on stderr"
final = outputs[-1]
assert final["status"] == "complete" and final["resolution"] == final["of"], f"not complete: {final}"
assert y.shape == (a.shape[0],), f"y has shape {y.shape}"
# Exact fixed-point product of the chunks, in integer arithmetic (every term below 2^63).
p = q = parts
ca, cx = chunks(a, p), chunks(x, q)
unit = p[-1] + q[-1]
acc = np.zeros(a.shape[0], dtype=np.int64)
for i in range(len(p) - 1):
    for j in range(len(q) - 1):
        acc += (ca[i] @ cx[j]) * (1 << ((p[i + 1] + q[j + 1]) - unit))
assert np.all(np.abs(acc) < 2 ** 53)
exact = acc.astype(np.float64) * 2.0 ** unit
if not np.array_equal(y, exact):
    raise SystemExit(f"y differs from the exact fixed-point product: max |diff| {np.max(np.abs(y - exact)):.3e}")
# And within the printed bound of numpy's float64 product (widened by numpy's own rounding).
ref = a @ x
slack = a.shape[1] * 2.0 ** -53 * (np.abs(a) @ np.abs(x))
err = np.abs(y - ref)
assert np.all(err <= final["bound"] + slack), f"error {err.max():.3e} exceeds the bound {final['bound']:.3e}"
print(f"test-compose-podman: y ({y.shape[0]} values) equals numpy's exact fixed-point product bit for bit; "
      f"max |y - A·x| = {err.max():.3e} <= bound {final['bound']:.3e}; {len(outputs)} refinement(s), "
      f"final after {final['elapsed_ms']:.0f} ms", file=sys.stderr)
PY

# ---------------------------------------------------------------- the aggregator's log
job=$(python3 -c 'import json, sys; print(next(json.loads(l)["job"] for l in open(sys.argv[1]) if l.startswith("{")))' "$tmp/job.err")
"${cli[@]}" logs aggregator >"$tmp/aggregator.log" 2>&1 || fail "compose-podman.sh logs aggregator failed"
refinements=$(grep -c "job.id=$job .*refinement" "$tmp/aggregator.log" || true)
((refinements >= 1)) || { tail -n 20 "$tmp/aggregator.log" >&2; fail "no refinement line for job $job in the aggregator's log"; }
grep "job.id=$job .*refinement" "$tmp/aggregator.log" | tail -n 1 >&2
note "aggregator logged $refinements refinement line(s) for job $job"

# ---------------------------------------------------------------- down
"${cli[@]}" down -v || fail "compose-podman.sh down -v failed"
left=$("${cli[@]}" ps)
[[ -z $left ]] || fail "containers left after down: $left"
note "PASS"

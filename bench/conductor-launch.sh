#!/usr/bin/env bash
# Benchmark (not a test): launching instances on a local moto server, in ROUNDS (default 10)
# interleaved rounds (the order rotated each round, moto's state reset before each), each with:
#   - `conductor launch --count N` (N=100; create-only registration, RunInstances, then a
#     compare-and-swap recording the instance id; concurrency CONCURRENCY, default 16);
#   - boto3 doing the registration + RunInstances per instance at the same concurrency
#     (bench/launch-baseline.py: less work than the conductor: no preflight, no CAS), timed as
#     the conductor is, as a whole process;
#   - moto's ceiling on this machine: bare RunInstances over kept-alive HTTP, at concurrency 1
#     and CONCURRENCY, no S3 (bench/launch-baseline.py raw);
#   - the sequential AWS CLI loop (one `aws s3api put-object --if-none-match '*'` + one
#     `aws ec2 run-instances` per instance), CLI_N (default 10) instances per round: its rate does
#     not depend on N, and 100 a round would take 2 minutes a round.
# Reports launches/s min/median/max for each, the ratios of medians and the load average.
#
#   bench/conductor-launch.sh                  # N=100, debug build of the conductor
#   N=50 ROUNDS=3 PROFILE=release bench/conductor-launch.sh
#
# Needs `sudo tests/setup.sh` (moto); installs awscli and boto3 into $BOOTCFG_TEST_HOME/bench-venv
# (bench/requirements-bench.txt) on first use.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
N=${N:-100}
CLI_N=${CLI_N:-10}
ROUNDS=${ROUNDS:-10}
CONC=${CONCURRENCY:-16}
PROFILE=${PROFILE:-debug}
home=${BOOTCFG_TEST_HOME:-/var/tmp/bootcfg-test}
moto=$home/venv/bin/moto_server
ami=ami-03cf127a   # one of moto's built-in images

[ -x "$moto" ] || { echo "moto is missing ($moto); run: sudo tests/setup.sh" >&2; exit 1; }

bvenv=$home/bench-venv
if ! cmp -s "$here/requirements-bench.txt" "$bvenv/requirements-bench.txt" 2>/dev/null; then
  echo "== installing awscli and boto3 into $bvenv" >&2
  rm -rf "$bvenv"
  python3 -m venv "$bvenv"
  "$bvenv/bin/pip" install -q -r "$here/requirements-bench.txt"
  cp "$here/requirements-bench.txt" "$bvenv/requirements-bench.txt"
fi
aws=$bvenv/bin/aws
py=$bvenv/bin/python
baseline=$here/launch-baseline.py

echo "== building the conductor ($PROFILE)" >&2
if [ "$PROFILE" = release ]; then
  (cd "$root" && cargo build -q --release -p conductor)
else
  (cd "$root" && cargo build -q -p conductor)
fi
conductor=$root/target/$PROFILE/conductor

work=$(mktemp -d)
moto_pid=
cleanup() {
  if [ -n "$moto_pid" ]; then kill "$moto_pid" 2>/dev/null || true; wait "$moto_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

MOTO_ENABLE_AMI_VALIDATION=true "$moto" -H 127.0.0.1 -p 0 2>"$work/moto.log" >/dev/null &
moto_pid=$!
endpoint=
for _ in $(seq 100); do
  endpoint=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$work/moto.log" | head -1 || true)
  [ -n "$endpoint" ] && break
  sleep 0.1
done
[ -n "$endpoint" ] || { echo "moto did not start:" >&2; cat "$work/moto.log" >&2; exit 1; }

unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_CONFIG_FILE AWS_SHARED_CREDENTIALS_FILE AWS_SESSION_TOKEN
export AWS_ENDPOINT_URL=$endpoint AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true

# Reset moto, create the buckets, and warm up its EC2 backend (its first call takes ~2 s) so no
# side pays for it.
buckets=(bench-conductor bench-boto3 bench-cli)
"$py" "$baseline" setup "${buckets[@]}"

cat >"$work/conductor.yaml" <<EOF
registry: s3://bench-conductor
concurrency: $CONC
launch:
  image: $ami
  instance_type: t3.micro
puppet:
  server: puppet.example.net
  ca_cert_file: $root/examples/puppet-ca.pem
  extensions: {pp_role: web}
user_data_template: |
  #cloud-config
  puppet: {package_name: puppet-agent, exec: true, start_service: false}
EOF

# The baselines' user-data: the conductor's own rendering (same size), its secret swapped per instance.
"$conductor" launch -c "$work/conductor.yaml" --dry-run 2>/dev/null >"$work/template.yaml"

now() { date +%s.%N; }
# Each measurement appends "name launched seconds" to $work/rows.
m_conductor() {
  local t0 t1
  t0=$(now)
  "$conductor" launch -c "$work/conductor.yaml" --count "$N" --output json >"$work/conductor.json" 2>"$work/conductor.err" || {
    echo "conductor failed:" >&2; cat "$work/conductor.err" >&2; exit 1; }
  t1=$(now)
  echo "conductor $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["launched"])' "$work/conductor.json") $(echo "$t1 - $t0" | bc -l)" >>"$work/rows"
}
m_boto3() { # timed as the conductor is: the whole process (Python start-up, imports, clients included)
  local t0 t1
  t0=$(now)
  "$py" "$baseline" boto3 "$N" "$CONC" bench-boto3 "$ami" "$work/template.yaml" >"$work/b.json"
  t1=$(now)
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("boto3", d["launched"], sys.argv[2])' "$work/b.json" "$(echo "$t1 - $t0" | bc -l)" >>"$work/rows"
}
m_raw() { # concurrency
  "$py" "$baseline" raw "$N" "$1" "$ami" >"$work/r.json"
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("raw" + sys.argv[2], d["launched"], d["seconds"])' "$work/r.json" "$1" >>"$work/rows"
}
m_cli() {
  local t0 t1 regs
  t0=$(now)
  for _ in $(seq "$CLI_N"); do
    cn=$(python3 -c 'import uuid; print(uuid.uuid4())')
    secret=$(openssl rand -hex 32)
    hash=$(printf %s "$secret" | sha256sum | cut -d' ' -f1)
    printf '{"version":1,"certname":"%s","secret_sha256":"%s","created_at":"%s","expires_at":"%s","launched_by":"bench"}\n' \
      "$cn" "$hash" "$(date -u +%FT%TZ)" "$(date -u -d '+30 min' +%FT%TZ)" >"$work/reg.json"
    sed -e "s/<redacted>/$secret/" -e "s/certname: .*/certname: $cn/" "$work/template.yaml" >"$work/ud.yaml"
    "$aws" s3api put-object --bucket bench-cli --key "registrations/$cn.json" --body "$work/reg.json" \
      --if-none-match '*' --output text >/dev/null
    "$aws" ec2 run-instances --image-id "$ami" --instance-type t3.micro --count 1 --client-token "$cn" \
      --user-data "file://$work/ud.yaml" \
      --tag-specifications "ResourceType=instance,Tags=[{Key=certname,Value=$cn},{Key=Name,Value=$cn}]" \
      --query 'Instances[0].InstanceId' --output text >/dev/null
  done
  t1=$(now)
  regs=$("$py" "$baseline" count bench-cli | python3 -c 'import json,sys; print(json.load(sys.stdin)["registrations"]["bench-cli"])')
  echo "cli $regs $(echo "$t1 - $t0" | bc -l)" >>"$work/rows"
}

: >"$work/rows"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
measures=(m_conductor m_boto3 "m_raw 1" "m_raw $CONC" m_cli)
for round in $(seq "$ROUNDS"); do
  echo "== round $round/$ROUNDS" >&2
  # a fresh moto state each round, and the order rotated each round
  [ "$round" = 1 ] || "$py" "$baseline" setup "${buckets[@]}"
  k=${#measures[@]}
  for j in $(seq 0 $((k - 1))); do
    ${measures[$(( (j + round - 1) % k ))]}
  done
  "$py" "$baseline" count "${buckets[@]}" >"$work/count.json"
  python3 - "$work/count.json" "$N" "$CLI_N" <<'PY'
import json, sys
d, n, cli_n = json.load(open(sys.argv[1])), int(sys.argv[2]), int(sys.argv[3])
want = 4 * n + cli_n  # conductor, boto3, the two bare loops, the CLI loop
ok = d["instances"] == want and d["registrations"] == {"bench-conductor": n, "bench-boto3": n, "bench-cli": cli_n}
sys.exit(0 if ok else f"round check failed: {d}, want {want} instances")
PY
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$work/rows" "$N" "$CLI_N" "$ROUNDS" "$CONC" "$PROFILE" "$load_start" "$load_end" <<'PY'
import json, statistics as st, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
n, cli_n, rounds, conc, profile, l0, l1 = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], sys.argv[7], sys.argv[8]
want = {"conductor": n, "boto3": n, "raw1": n, f"raw{conc}": n, "cli": cli_n}
rate = {}
for name, launched, secs in rows:
    if int(launched) != want[name]:
        sys.exit(f"{name} launched {launched} of {want[name]}")
    rate.setdefault(name, []).append(want[name] / float(secs))
med = {k: st.median(v) for k, v in rate.items()}
mmm = lambda k: "%7.1f / %7.1f / %7.1f" % (min(rate[k]), med[k], max(rate[k]))
ceiling = max(("raw1", f"raw{conc}"), key=lambda k: med[k])
print(f"{rounds} interleaved rounds (order rotated each round, moto state reset before each); per round {n} launches each by the conductor, "
      f"boto3 and the two bare loops, {cli_n} by the AWS CLI loop; load average (1, 5, 15 min) start {l0}, end {l1}")
print(f"{'':62} launches/s  min / median / max")
print(f"{'conductor (' + profile + ' build), concurrency ' + str(conc):62} {mmm('conductor')}")
print(f"{'boto3, registration + RunInstances, concurrency ' + str(conc):62} {mmm('boto3')}")
print(f"{'  (both timed as whole processes: start-up, set-up and launches)':62}")
print(f"{'AWS CLI sequential loop (awscli v1, 2 processes a launch)':62} {mmm('cli')}")
print(f"{'moto ceiling: bare RunInstances, no S3, concurrency 1':62} {mmm('raw1')}")
print(f"{'moto ceiling: bare RunInstances, no S3, concurrency ' + str(conc):62} {mmm(f'raw{conc}')}")
print(f"ratio (CLI loop / conductor), time per launch: {med['conductor'] / med['cli']:.1f}x (of medians)")
print(f"ratio (boto3 / conductor), time per launch at the same concurrency: {med['conductor'] / med['boto3']:.2f}x (of medians; above 1 the conductor is faster)")
print(f"conductor at {100 * med['conductor'] / med[ceiling]:.0f}% of moto's measured ceiling on this machine "
      f"({med[ceiling]:.1f} bare RunInstances/s at concurrency {ceiling[3:]}; the conductor also makes 2 S3 writes a launch)")
print(json.dumps({k: round(v, 2) for k, v in med.items()}))
PY

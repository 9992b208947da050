#!/usr/bin/env bash
# Benchmark (not a test): launch N instances (default 100) on a local moto server with the
# conductor, and the same number with a sequential AWS CLI loop (one `aws s3api put-object
# --if-none-match '*'` registration + one `aws ec2 run-instances` per instance) against the
# same server, and report both times and their ratio.
#
#   bench/conductor-launch.sh                  # N=100, debug build of the conductor
#   N=50 PROFILE=release bench/conductor-launch.sh
#
# The conductor does more per instance than the loop (create-only registration, RunInstances,
# then a compare-and-swap update recording the instance id, plus a preflight and the
# public-bucket check once), so the ratio is conservative. Needs `sudo tests/setup.sh` (moto);
# installs awscli into $BOOTCFG_TEST_HOME/bench-venv (bench/requirements-bench.txt) on first use.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
N=${N:-100}
PROFILE=${PROFILE:-debug}
home=${BOOTCFG_TEST_HOME:-/var/tmp/bootcfg-test}
moto=$home/venv/bin/moto_server
ami=ami-03cf127a   # one of moto's built-in images

[ -x "$moto" ] || { echo "moto is missing ($moto); run: sudo tests/setup.sh" >&2; exit 1; }

bvenv=$home/bench-venv
if ! cmp -s "$here/requirements-bench.txt" "$bvenv/requirements-bench.txt" 2>/dev/null; then
  echo "== installing awscli into $bvenv" >&2
  rm -rf "$bvenv"
  python3 -m venv "$bvenv"
  "$bvenv/bin/pip" install -q -r "$here/requirements-bench.txt"
  cp "$here/requirements-bench.txt" "$bvenv/requirements-bench.txt"
fi
aws=$bvenv/bin/aws

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

# Warm up moto's EC2 backend (its first call takes ~2 s) so neither side pays for it.
"$aws" ec2 describe-regions --output text >/dev/null
"$aws" s3api create-bucket --bucket bench-conductor >/dev/null
"$aws" s3api create-bucket --bucket bench-cli >/dev/null

cat >"$work/conductor.yaml" <<EOF
registry: s3://bench-conductor
concurrency: ${CONCURRENCY:-16}
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

now() { date +%s.%N; }

echo "== conductor: launch --count $N" >&2
t0=$(now)
"$conductor" launch -c "$work/conductor.yaml" --count "$N" --output json >"$work/conductor.json" 2>"$work/conductor.err" || {
  echo "conductor failed:" >&2; cat "$work/conductor.err" >&2; exit 1; }
t1=$(now)

# The loop's user-data: the conductor's own rendering (same size), its secret swapped per instance.
"$conductor" launch -c "$work/conductor.yaml" --dry-run 2>/dev/null >"$work/template.yaml"

echo "== AWS CLI: $N x (s3api put-object --if-none-match '*' + ec2 run-instances), sequential" >&2
t2=$(now)
for _ in $(seq "$N"); do
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
t3=$(now)

launched=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["launched"])' "$work/conductor.json")
registered_cli=$("$aws" s3api list-objects-v2 --bucket bench-cli --prefix registrations/ --query 'length(Contents[])' --output text)
instances=$("$aws" ec2 describe-instances --query 'length(Reservations[].Instances[])' --output text)

python3 - "$N" "$t0" "$t1" "$t2" "$t3" "$launched" "$registered_cli" "$instances" "$PROFILE" <<'EOF'
import json, sys
n, t0, t1, t2, t3 = int(sys.argv[1]), *map(float, sys.argv[2:6])
total = lambda text: sum(int(x) for x in text.split() if x.isdigit())  # the CLI prints one count per page
launched, registered_cli, instances, profile = int(sys.argv[6]), total(sys.argv[7]), total(sys.argv[8]), sys.argv[9]
c, a = t1 - t0, t3 - t2
print(f"instances launched: conductor {launched}/{n}, AWS CLI loop {registered_cli}/{n} registrations; {instances} instances on moto")
print(f"conductor ({profile} build): {c:7.2f} s  ({n / c:6.1f} launches/s)")
print(f"AWS CLI sequential loop:   {a:7.2f} s  ({n / a:6.1f} launches/s)")
print(f"ratio (CLI loop / conductor): {a / c:.1f}x")
print(json.dumps({"n": n, "conductor_s": round(c, 3), "aws_cli_s": round(a, 3), "ratio": round(a / c, 2), "profile": profile}))
sys.exit(0 if launched == n and registered_cli == n and instances == 2 * n else 1)
EOF

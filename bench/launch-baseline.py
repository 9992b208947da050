#!/usr/bin/env python3
"""Benchmark helper (not a test) for bench/conductor-launch.sh: two baselines against the same moto
server as the conductor, each printing one JSON line {"launched": n, "seconds": s}.

    launch-baseline.py boto3 N CONCURRENCY BUCKET AMI TEMPLATE   # the conductor's work in boto3
    launch-baseline.py raw N CONCURRENCY AMI                     # moto's ceiling: bare RunInstances
    launch-baseline.py setup BUCKET...                           # reset moto, buckets, warm-up
    launch-baseline.py count BUCKET...                           # instances and registrations

boto3: per instance, the registration (`put_object` with IfNoneMatch='*', create-only) then
`run_instances` (client token, user-data with the secret swapped in, certname tags), N instances
on a thread pool of CONCURRENCY, as the conductor does with its `concurrency`. No preflight and
no compare-and-swap of the instance id afterwards (the conductor does both): the baseline does
less than the conductor.

raw: the cheapest RunInstances a client can send, to measure what moto itself can serve on this
machine: a form-encoded POST (ImageId, InstanceType, MinCount=MaxCount=1) over one kept-alive
HTTP connection per thread, with an unsigned Authorization header (moto does not check
signatures), no S3. Its launches/s is moto's ceiling for this machine; the client is small next to
moto's own work, but shares the 2 cores with it.
"""
import hashlib
import http.client
import json
import os
import re
import secrets
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode, urlparse


def boto3_mode(n, conc, bucket, ami, template_path):
    import boto3
    from botocore.config import Config

    template = open(template_path).read()
    cfg = Config(max_pool_connections=conc, retries={"max_attempts": 1})
    s3 = boto3.client("s3", config=cfg)
    ec2 = boto3.client("ec2", config=cfg)

    def one(_):
        cn = str(uuid.uuid4())
        secret = secrets.token_hex(32)
        now = datetime.now(timezone.utc)
        reg = {
            "version": 1,
            "certname": cn,
            "secret_sha256": hashlib.sha256(secret.encode()).hexdigest(),
            "created_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "expires_at": (now + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "launched_by": "bench-boto3",
        }
        s3.put_object(Bucket=bucket, Key=f"registrations/{cn}.json", Body=json.dumps(reg).encode(), IfNoneMatch="*")
        # as the CLI loop's sed: the conductor's rendering, its secret and certname swapped
        ud = re.sub(r"certname: .*", f"certname: {cn}", template.replace("<redacted>", secret))
        r = ec2.run_instances(
            ImageId=ami, InstanceType="t3.micro", MinCount=1, MaxCount=1, ClientToken=cn, UserData=ud,
            TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "certname", "Value": cn}, {"Key": "Name", "Value": cn}]}],
        )
        return r["Instances"][0]["InstanceId"]

    # clients are created (endpoint resolution, credentials) before the clock starts
    t0 = time.perf_counter()
    with ThreadPoolExecutor(conc) as ex:
        ids = list(ex.map(one, range(n)))
    dt = time.perf_counter() - t0
    return len([i for i in ids if i]), dt


def raw_mode(n, conc, ami):
    ep = urlparse(os.environ["AWS_ENDPOINT_URL"])
    body = urlencode({"Action": "RunInstances", "Version": "2016-11-15", "ImageId": ami,
                      "InstanceType": "t3.micro", "MinCount": "1", "MaxCount": "1"}).encode()
    day = datetime.now(timezone.utc).strftime("%Y%m%d")
    headers = {
        "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
        "Authorization": f"AWS4-HMAC-SHA256 Credential=testing/{day}/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0",
    }
    left = [n]
    lock = threading.Lock()
    ok = [0]

    def worker():
        c = http.client.HTTPConnection(ep.hostname, ep.port)
        while True:
            with lock:
                if left[0] == 0:
                    return
                left[0] -= 1
            c.request("POST", "/", body, headers)
            r = c.getresponse()
            data = r.read()
            if r.status == 200 and b"<instanceId>" in data:
                with lock:
                    ok[0] += 1
            else:
                sys.exit(f"RunInstances: HTTP {r.status}: {data[:300]!r}")

    t0 = time.perf_counter()
    ts = [threading.Thread(target=worker) for _ in range(conc)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return ok[0], time.perf_counter() - t0


def setup_mode(buckets):
    """Reset moto (POST /moto-api/reset), create the buckets, and make the first EC2 call (moto
    builds its EC2 backend on first use, ~2 s) so no measured side pays for it."""
    import boto3

    ep = urlparse(os.environ["AWS_ENDPOINT_URL"])
    c = http.client.HTTPConnection(ep.hostname, ep.port)
    c.request("POST", "/moto-api/reset")
    r = c.getresponse()
    r.read()
    if r.status != 200:
        sys.exit(f"moto reset: HTTP {r.status}")
    s3 = boto3.client("s3")
    for b in buckets:
        s3.create_bucket(Bucket=b)
    boto3.client("ec2").describe_regions()


def count_mode(buckets):
    """Instances on moto, and registrations in each bucket."""
    import boto3

    ec2 = boto3.client("ec2")
    n = sum(len(r["Instances"]) for p in ec2.get_paginator("describe_instances").paginate() for r in p["Reservations"])
    s3 = boto3.client("s3")
    regs = {b: sum(p.get("KeyCount", 0) for p in s3.get_paginator("list_objects_v2").paginate(Bucket=b, Prefix="registrations/")) for b in buckets}
    print(json.dumps({"instances": n, "registrations": regs}))


def main():
    mode = sys.argv[1]
    if mode == "setup":
        return setup_mode(sys.argv[2:])
    if mode == "count":
        return count_mode(sys.argv[2:])
    if mode == "boto3":
        launched, s = boto3_mode(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6])
    elif mode == "raw":
        launched, s = raw_mode(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    else:
        sys.exit(f"unknown mode {mode}")
    print(json.dumps({"launched": launched, "seconds": s}))


if __name__ == "__main__":
    main()

"""Drives one server running under callgrind and prints the user-space
instructions it spent per request (see run.sh)."""
import glob
import http.client
import json
import os
import subprocess
import sys
import time

port, pid, scenario, n, out_dir, token_file = sys.argv[1:7]
n = int(n)
conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=120)
token = open(token_file).read().strip()


def one():
    if scenario in ("health", "static", "static-headers"):
        conn.request("GET", "/health")
    elif scenario in ("verify", "baseline-verify"):
        conn.request("POST", "/auth/verify", body=json.dumps({"token": token}),
                     headers={"content-type": "application/json"})
    elif scenario == "profile":
        conn.request("GET", "/auth/profile", headers={"authorization": "Bearer " + token})
    else:
        raise SystemExit(f"unknown scenario {scenario}")
    res = conn.getresponse()
    body = res.read()
    if res.status != 200:
        raise SystemExit(f"{scenario}: status {res.status}: {body[:200]!r}")


for _ in range(200):  # warm-up: connection, caches, lazy statics
    one()
subprocess.run(["callgrind_control", "-z", pid], check=True, capture_output=True)
for _ in range(n):
    one()
subprocess.run(["callgrind_control", "-d", scenario, pid], check=True, capture_output=True)
time.sleep(1)
dumps = sorted(glob.glob(f"{out_dir}/callgrind.out.{pid}.*"), key=os.path.getmtime)
total = None
for line in open(dumps[-1]):
    if line.startswith(("summary:", "totals:")):
        total = int(line.split()[1])
print(f"{scenario}\t{total / n:.0f}")

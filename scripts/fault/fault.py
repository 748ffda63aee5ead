#!/usr/bin/env python3
"""Steady load and the checks of the fault script (scripts/fault/run.sh).

    fault.py load BASE_URL OUT_DIR      runs until OUT_DIR/stop exists (bounded by --max-secs)
    fault.py check OUT_DIR              reads OUT_DIR/{requests,ready,marks}.jsonl, prints a summary,
                                        exits 1 on any violated expectation

Only the standard library. Every request has a client-side timeout, so a hung
request is recorded (status 0, "timeout") instead of hanging the script.
"""

import base64
import http.client
import json
import os
import random
import sys
import threading
import time
import urllib.parse

PASSWORD = "correct horse battery staple 9"
CLIENT_TIMEOUT = 15.0  # seconds: anything near this is a hang


def request(base, method, path, body=None, token=None, timeout=CLIENT_TIMEOUT):
    """One HTTP request on a fresh connection: (status, json body or None, seconds)."""
    url = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    headers = {"Connection": "close"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = "Bearer " + token
    started = time.time()
    try:
        conn.request(method, path, body=data, headers=headers)
        res = conn.getresponse()
        raw = res.read()
        status = res.status
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return status, parsed, time.time() - started
    except (OSError, http.client.HTTPException) as e:
        kind = "timeout" if "timed out" in str(e) else "connection"
        return 0, {"client_error": kind, "detail": str(e)}, time.time() - started
    finally:
        conn.close()


def sid_of(token):
    """The `sid` claim of an access token (no verification: the server did that)."""
    try:
        payload = token.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        return json.loads(base64.urlsafe_b64decode(payload))["sid"]
    except (IndexError, KeyError, ValueError):
        return None


class Recorder:
    def __init__(self, path):
        self.lock = threading.Lock()
        self.file = open(path, "a", buffering=1)

    def write(self, **row):
        with self.lock:
            self.file.write(json.dumps(row) + "\n")


def worker(base, wid, rec, stop, deadline):
    """Registers users, logs in, verifies, reads profiles and refreshes, in a loop."""
    rng = random.Random(wid)
    mine = []  # (email, token, refresh)
    n = 0
    while not stop() and time.time() < deadline:
        n += 1
        op = "register" if not mine or n % 3 == 1 else rng.choice(
            ["login", "verify", "verify", "profile", "refresh"])
        t0 = time.time()
        if op == "register":
            email = f"fault-{wid}-{n}-{int(t0 * 1000)}@example.com"
            status, body, secs = request(base, "POST", "/auth/register",
                                         {"email": email, "password": PASSWORD, "name": f"W{wid}"})
            sid = None
            if status == 201:
                sid = sid_of(body["token"])
                mine.append([email, body["token"], body["refresh_token"]])
            rec.write(t=t0, op=op, status=status, secs=secs, email=email, sid=sid,
                      reason=reason(body))
        elif op == "login":
            email = rng.choice(mine)[0]
            status, body, secs = request(base, "POST", "/auth/login",
                                         {"email": email, "password": PASSWORD})
            sid = None
            if status == 200:
                sid = sid_of(body["token"])
                mine.append([email, body["token"], body["refresh_token"]])
            rec.write(t=t0, op=op, status=status, secs=secs, email=email, sid=sid,
                      reason=reason(body))
        elif op == "verify":
            entry = rng.choice(mine)
            status, body, secs = request(base, "POST", "/auth/verify", {"token": entry[1]})
            rec.write(t=t0, op=op, status=status, secs=secs, reason=reason(body))
        elif op == "profile":
            entry = rng.choice(mine)
            status, body, secs = request(base, "GET", "/auth/profile", token=entry[1])
            rec.write(t=t0, op=op, status=status, secs=secs, reason=reason(body))
        else:
            entry = rng.choice(mine)
            status, body, secs = request(base, "POST", "/auth/refresh",
                                         {"refresh_token": entry[2]})
            if status == 200:
                entry[1], entry[2] = body["token"], body["refresh_token"]
            elif status == 401:
                # This refresh token was rotated by a request whose answer was lost, or
                # its session was revoked as a reuse: forget it.
                mine.remove(entry)
            rec.write(t=t0, op=op, status=status, secs=secs, reason=reason(body))
        if len(mine) > 50:
            mine = mine[-50:]
        time.sleep(0.05)


def reason(body):
    if isinstance(body, dict):
        if "error" in body and isinstance(body["error"], dict):
            return body["error"].get("reason")
        if "client_error" in body:
            return body["client_error"]
    return None


def ready_poller(base, rec, stop, deadline):
    while not stop() and time.time() < deadline:
        t0 = time.time()
        status, body, secs = request(base, "GET", "/ready", timeout=10)
        text = json.dumps(body) if body else ""
        rec.write(t=t0, status=status, secs=secs, body=text[:400])
        time.sleep(0.25)


def load(base, out, workers=4, max_secs=300):
    rec = Recorder(os.path.join(out, "requests.jsonl"))
    ready = Recorder(os.path.join(out, "ready.jsonl"))
    stop_file = os.path.join(out, "stop")
    stop = lambda: os.path.exists(stop_file)  # noqa: E731
    deadline = time.time() + max_secs
    threads = [threading.Thread(target=worker, args=(base, i, rec, stop, deadline), daemon=True)
               for i in range(workers)]
    threads.append(threading.Thread(target=ready_poller, args=(base, ready, stop, deadline),
                                    daemon=True))
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def read_jsonl(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


DB_OPS = {"register", "login", "refresh"}


def check(out, request_timeout, recover_within=5.0, fail_fast=3.0):
    reqs = read_jsonl(os.path.join(out, "requests.jsonl"))
    ready = read_jsonl(os.path.join(out, "ready.jsonl"))
    marks = {m["mark"]: m["t"] for m in read_jsonl(os.path.join(out, "marks.jsonl"))}
    problems = []
    lines = []

    def window(a, b):
        return [r for r in reqs if marks[a] <= r["t"] < marks[b]]

    def summary(rows):
        by = {}
        for r in rows:
            key = f'{r["op"]} {r["status"]}' + (f' {r["reason"]}' if r.get("reason") else "")
            by[key] = by.get(key, 0) + 1
        return ", ".join(f"{k}: {v}" for k, v in sorted(by.items()))

    lines.append(f"requests: {len(reqs)}; /ready polls: {len(ready)}")
    slowest = max(reqs, key=lambda r: r["secs"]) if reqs else None
    if slowest:
        lines.append(f'slowest request overall: {slowest["op"]} {slowest["secs"]:.2f}s '
                     f'(status {slowest["status"]})')

    # Never a 500, never a hang, never a dropped connection, in any phase.
    for r in reqs:
        if r["status"] == 0:
            problems.append(f'{r["op"]} at +{r["t"] - marks["start"]:.1f}s got no answer '
                            f'({r.get("reason")}) after {r["secs"]:.1f}s')
        elif r["status"] >= 500 and r["status"] != 503:
            problems.append(f'{r["op"]} at +{r["t"] - marks["start"]:.1f}s: {r["status"]}')
        if r["secs"] > request_timeout + 1:
            problems.append(f'{r["op"]} took {r["secs"]:.1f}s (> REQUEST_TIMEOUT_SECS)')

    # Steady state before any fault: no errors at all.
    # (Finished before the kill: one in flight when PostgreSQL dies may fail.)
    base = [r for r in reqs if r["t"] + r["secs"] < marks["pg_killing"]]
    bad = [r for r in base if r["status"] >= 400]
    lines.append(f"before faults ({len(base)} requests): {summary(base)}")
    if not base:
        problems.append("no requests before the faults")
    if bad:
        problems.append(f"{len(bad)} errors before any fault: {summary(bad)}")

    # PostgreSQL down: database calls fail fast with 503; /ready names the database.
    down = window("pg_down", "pg_starting")
    # Started once PostgreSQL was gone, answered before it was started again.
    settled = [r for r in down if r["t"] >= marks["pg_down"] + 0.5
               and r["t"] + r["secs"] < marks["pg_starting"]]
    lines.append(f"PostgreSQL down {marks['pg_starting'] - marks['pg_down']:.1f}s "
                 f"({len(down)} requests): {summary(down)}")
    db_down = [r for r in settled if r["op"] in DB_OPS]
    if not db_down:
        problems.append("no database request while PostgreSQL was down")
    for r in db_down:
        if r["status"] not in (503,):
            problems.append(f'{r["op"]} while PostgreSQL was down: {r["status"]} (want 503)')
    if db_down:
        worst = max(r["secs"] for r in db_down)
        lines.append(f"  slowest database request while down: {worst:.2f}s (limit {fail_fast}s)")
        if worst > fail_fast:
            problems.append(f"a database request took {worst:.2f}s while PostgreSQL was down")
    ready_down = [p for p in ready if marks["pg_down"] + 1 <= p["t"]
                  and p["t"] + p["secs"] < marks["pg_starting"]]
    if not ready_down:
        problems.append("/ready was not polled while PostgreSQL was down")
    for p in ready_down:
        if p["status"] != 503 or "database" not in p["body"]:
            problems.append(f'/ready while PostgreSQL was down: {p["status"]} {p["body"][:120]}')
            break

    # PostgreSQL back: recovery on its own within `recover_within` seconds.
    after = [r for r in reqs if marks["pg_starting"] <= r["t"] < marks["redis_stopping"]]
    ok_db = [r for r in after if r["op"] in DB_OPS and r["status"] < 400]
    if not ok_db:
        problems.append("no successful database request after PostgreSQL came back")
    else:
        first_ok = max(0.0, min(r["t"] + r["secs"] for r in ok_db) - marks["pg_up"])
        lines.append(f"  first successful database request {first_ok:.2f}s after PostgreSQL "
                     f"was back (limit {recover_within}s)")
        if first_ok > recover_within:
            problems.append(f"recovery took {first_ok:.2f}s")
    late = [r for r in after if r["t"] >= marks["pg_up"] + recover_within and r["status"] >= 500]
    if late:
        problems.append(f"{len(late)} errors later than {recover_within}s after PostgreSQL "
                        f"returned: {summary(late)}")
    ready_back = [p for p in ready if p["t"] >= marks["pg_starting"] and p["status"] == 200]
    if not ready_back or ready_back[0]["t"] - marks["pg_up"] > recover_within:
        problems.append("/ready did not return to 200 within the recovery limit")
    else:
        lines.append(f"  /ready 200 again {max(0.0, ready_back[0]['t'] - marks['pg_up']):.2f}s after "
                     f"PostgreSQL was back")
    lines.append(f"after PostgreSQL returned ({len(after)} requests): {summary(after)}")

    # Redis down: served from the database, /ready names Redis; recovers.
    rdown = window("redis_down", "redis_starting")
    settled = [r for r in rdown if r["t"] >= marks["redis_down"] + 0.5
               and r["t"] + r["secs"] < marks["redis_starting"]]
    lines.append(f"Redis down {marks['redis_starting'] - marks['redis_down']:.1f}s "
                 f"({len(rdown)} requests): {summary(rdown)}")
    errs = [r for r in settled if r["status"] >= 500]
    if not settled:
        problems.append("no request while Redis was down")
    if errs:
        problems.append(f"{len(errs)} errors while Redis was down: {summary(errs)}")
    if settled:
        worst = max(r["secs"] for r in settled)
        lines.append(f"  slowest request while Redis was down: {worst:.2f}s")
    ready_rdown = [p for p in ready if marks["redis_down"] + 1 <= p["t"]
                   and p["t"] + p["secs"] < marks["redis_starting"]]
    if not ready_rdown:
        problems.append("/ready was not polled while Redis was down")
    for p in ready_rdown:
        if p["status"] != 503 or "redis" not in p["body"]:
            problems.append(f'/ready while Redis was down: {p["status"]} {p["body"][:120]}')
            break
    ready_rback = [p for p in ready if p["t"] >= marks["redis_starting"] and p["status"] == 200]
    if not ready_rback or ready_rback[0]["t"] - marks["redis_up"] > recover_within:
        problems.append("/ready did not return to 200 within the limit after Redis returned")
    else:
        lines.append(f"  /ready 200 again {max(0.0, ready_rback[0]['t'] - marks['redis_up']):.2f}s after "
                     f"Redis was back")
    tail = [r for r in reqs if r["t"] >= marks["redis_up"] + recover_within]
    if [r for r in tail if r["status"] >= 500]:
        problems.append(f"errors after Redis returned: {summary(tail)}")
    lines.append(f"after Redis returned ({len(tail)} requests past the limit): {summary(tail)}")

    # What was acknowledged must be there: users and their sessions.
    acked_users = sorted({r["email"] for r in reqs if r["op"] == "register" and r["status"] == 201})
    acked_sessions = sorted({r["sid"] for r in reqs
                             if r["op"] in ("register", "login") and r["status"] < 300
                             and r.get("sid")})
    with open(os.path.join(out, "acked_emails.txt"), "w") as f:
        f.write("\n".join(acked_users) + "\n")
    with open(os.path.join(out, "acked_sessions.txt"), "w") as f:
        f.write("\n".join(acked_sessions) + "\n")
    lines.append(f"acknowledged: {len(acked_users)} registrations, "
                 f"{len(acked_sessions)} sessions (checked in SQL by run.sh)")
    return lines, problems


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "load":
        max_secs = float(os.environ.get("FAULT_MAX_SECS", "300"))
        load(sys.argv[2], sys.argv[3], max_secs=max_secs)
        return 0
    if len(sys.argv) >= 3 and sys.argv[1] == "check":
        timeout = float(os.environ.get("REQUEST_TIMEOUT_SECS", "5"))
        lines, problems = check(sys.argv[2], timeout)
        for line in lines:
            print(line)
        for p in problems[:40]:
            print("VIOLATION:", p)
        if len(problems) > 40:
            print(f"... and {len(problems) - 40} more")
        return 1 if problems else 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())

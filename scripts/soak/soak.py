#!/usr/bin/env python3
"""Soak load for scripts/soak/run.sh: mixed traffic against a running server,
RSS sampled from /proc, a summary, exit 1 on any error or on RSS growth.

    soak.py BASE_URL SERVER_PID DURATION_SECS

Environment: SOAK_WORKERS (8), SOAK_RPS (150, total target rate), SOAK_USERS
(4 per worker), SOAK_MAX_GROWTH (0.10), SOAK_WARMUP_SECS (default: a fifth of
the duration, 10 to 60 s).

Traffic per worker, on keep-alive connections, each worker with its own users:
verify 35%, profile read 25% (/auth/profile and /users/{id}), profile write
10% (PATCH /users/{id}), refresh 15%, login 15%.
"""

import http.client
import json
import os
import random
import sys
import threading
import time

PASSWORD = "correct horse battery staple 9"


class Client:
    """A keep-alive connection that reconnects once if the server closed it."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.conn = None

    def call(self, method, path, body=None, token=None):
        headers = {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if token:
            headers["Authorization"] = "Bearer " + token
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            started = time.perf_counter()
            try:
                self.conn.request(method, path, body=data, headers=headers)
                res = self.conn.getresponse()
                raw = res.read()
                secs = time.perf_counter() - started
                if res.getheader("connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return res.status, (json.loads(raw) if raw else None), secs
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # An idle keep-alive connection closed by the server: once more, fresh.
                self.conn.close()
                self.conn = None
                if attempt == 1:
                    raise
        raise RuntimeError("unreachable")


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.latency = {}
        self.errors = []
        self.count = 0

    def add(self, op, status, secs, want, body):
        with self.lock:
            self.count += 1
            self.latency.setdefault(op, []).append(secs)
            if status != want:
                if len(self.errors) < 50:
                    self.errors.append(f"{op}: {status} {json.dumps(body)[:200]}")
                else:
                    self.errors.append(None)


def register(client, email):
    status, body, _ = client.call("POST", "/auth/register",
                                  {"email": email, "password": PASSWORD, "name": "Soak"})
    if status != 201:
        raise SystemExit(f"soak: setup registration failed: {status} {body}")
    return {"email": email, "id": body["user"]["id"], "token": body["token"],
            "refresh": body["refresh_token"]}


def worker(wid, host, port, deadline, per_worker_rps, n_users, stats, stop):
    client = Client(host, port)
    tag = f"{int(time.time())}-{os.getpid()}-{wid}"
    users = [register(client, f"soak-{tag}-{i}@example.com") for i in range(n_users)]
    rng = random.Random(wid)
    interval = 1.0 / per_worker_rps if per_worker_rps > 0 else 0
    next_at = time.monotonic()
    n = 0
    while time.time() < deadline and not stop.is_set():
        n += 1
        u = rng.choice(users)
        r = rng.random()
        try:
            if r < 0.35:
                status, body, secs = client.call("POST", "/auth/verify", {"token": u["token"]})
                stats.add("verify", status, secs, 200, body)
            elif r < 0.50:
                status, body, secs = client.call("GET", "/auth/profile", token=u["token"])
                stats.add("profile_read", status, secs, 200, body)
            elif r < 0.60:
                status, body, secs = client.call("GET", f"/users/{u['id']}", token=u["token"])
                stats.add("user_read", status, secs, 200, body)
            elif r < 0.70:
                status, body, secs = client.call(
                    "PATCH", f"/users/{u['id']}",
                    {"title": f"Title {n}", "bio": "x" * rng.randint(0, 400)}, token=u["token"])
                stats.add("profile_write", status, secs, 200, body)
            elif r < 0.85:
                status, body, secs = client.call("POST", "/auth/refresh",
                                                 {"refresh_token": u["refresh"]})
                stats.add("refresh", status, secs, 200, body)
                if status == 200:
                    u["token"], u["refresh"] = body["token"], body["refresh_token"]
            else:
                status, body, secs = client.call("POST", "/auth/login",
                                                 {"email": u["email"], "password": PASSWORD})
                stats.add("login", status, secs, 200, body)
                if status == 200:
                    # Log the old session out now and then, so sessions do not only pile up.
                    if rng.random() < 0.5:
                        s2, b2, t2 = client.call("POST", "/auth/logout", token=u["token"])
                        stats.add("logout", s2, t2, 204, b2)
                    u["token"], u["refresh"] = body["token"], body["refresh_token"]
        except (OSError, http.client.HTTPException, ValueError) as e:
            stats.add("transport", 0, 0.0, 200, {"error": str(e)})
        if interval:
            next_at += interval
            pause = next_at - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            else:
                next_at = time.monotonic()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] * 1000


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        return 2
    base, pid, duration = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    host, port = base.split("//")[1].split(":")
    port = int(port.rstrip("/"))
    workers = int(os.environ.get("SOAK_WORKERS", "8"))
    rps = float(os.environ.get("SOAK_RPS", "150"))
    n_users = int(os.environ.get("SOAK_USERS", "4"))
    max_growth = float(os.environ.get("SOAK_MAX_GROWTH", "0.10"))
    warmup = float(os.environ.get("SOAK_WARMUP_SECS", str(min(60.0, max(10.0, duration / 5)))))
    started = time.time()
    deadline = started + duration
    stats = Stats()
    stop = threading.Event()
    threads = [threading.Thread(target=worker,
                                args=(i, host, port, deadline, rps / workers, n_users, stats, stop),
                                daemon=True)
               for i in range(workers)]
    for t in threads:
        t.start()
    samples = []  # (seconds since start, RSS KiB)
    while time.time() < deadline and any(t.is_alive() for t in threads):
        try:
            samples.append((time.time() - started, rss_kib(pid)))
        except (OSError, RuntimeError):
            print("soak: the server process is gone")
            stop.set()
            break
        time.sleep(min(5.0, max(0.5, duration / 120)))
    for t in threads:
        t.join(timeout=60)
    try:
        samples.append((time.time() - started, rss_kib(pid)))
        alive = True
    except (OSError, RuntimeError):
        alive = False

    elapsed = time.time() - started
    problems = []
    print(f"soak: {stats.count} requests in {elapsed:.0f}s ({stats.count / elapsed:.0f}/s), "
          f"{workers} workers, target {rps:.0f}/s")
    for op, lat in sorted(stats.latency.items()):
        print(f"  {op:14} {len(lat):7d}  p50 {pct(lat, 0.5):7.1f} ms  p99 {pct(lat, 0.99):7.1f} ms"
              f"  max {max(lat) * 1000:7.1f} ms")
    n_errors = len(stats.errors)
    print(f"errors: {n_errors}")
    for e in [e for e in stats.errors if e][:20]:
        print("  ", e)
    if n_errors:
        problems.append(f"{n_errors} errors")
    if not alive:
        problems.append("the server process died")
    after = [kib for t, kib in samples if t >= warmup]
    before = [kib for t, kib in samples if t < warmup]
    csv = os.environ.get("SOAK_RSS_CSV")
    if csv:
        with open(csv, "w") as f:
            f.write("seconds,rss_kib\n" + "".join(f"{t:.1f},{kib}\n" for t, kib in samples))
    if len(after) >= 8:
        # RSS swings by the 19 MiB working memory of each Argon2 hash in
        # flight, so compare the floor (what is retained) and the peak of the
        # first and second halves after the warm-up, not single samples.
        half = len(after) // 2
        first, second = after[:half], after[half:]
        floor_growth = (min(second) - min(first)) / min(first)
        peak_growth = (max(second) - max(first)) / max(first)
        print(f"RSS: start {before[0] if before else after[0]} KiB; after the {warmup:.0f}s "
              f"warm-up, floor {min(first)} -> {min(second)} KiB ({floor_growth * 100:+.1f}%), "
              f"peak {max(first)} -> {max(second)} KiB ({peak_growth * 100:+.1f}%) "
              f"(limit {max_growth * 100:.0f}%); {len(samples)} samples")
        step = max(1, len(samples) // 20)
        print("RSS samples (s:KiB): " + " ".join(f"{t:.0f}:{kib}" for t, kib in samples[::step]))
        if floor_growth >= max_growth or peak_growth >= max_growth:
            problems.append(f"RSS grew after warm-up (floor {floor_growth * 100:+.1f}%, "
                            f"peak {peak_growth * 100:+.1f}%)")
    else:
        problems.append("too few RSS samples after the warm-up (duration too short?)")
    for p in problems:
        print("VIOLATION:", p)
    print("soak: FAILED" if problems else "soak: passed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

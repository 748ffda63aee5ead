"""Turns the TSV that run.sh records into the Markdown table of the load
benchmark: medians over rounds, ratios against the baselines measured in the
same run, and the targets of issue 7. A ratio is the median over rounds of
the ratio within each round (server and baseline measured within a minute of
each other), which a drift of the machine's speed between rounds does not
bias the way a ratio of medians would.

Usage: report.py RESULTS.tsv COMMIT DURATION THREADS CONNS ROUNDS LOGIN_RATE
"""

import datetime
import statistics
import sys
from collections import defaultdict

path, commit, duration, threads, conns, rounds, login_rate = sys.argv[1:8]


def kv(text):
    out = {}
    for part in text.split():
        if "=" in part:
            k, v = part.split("=", 1)
            try:
                out[k] = float(v)
            except ValueError:
                out[k] = v
    return out


wrk = defaultdict(list)  # (scenario, target) -> [dict]
by_round = defaultdict(dict)  # (scenario, target) -> {round: rps}
pacer = defaultdict(list)  # target -> [dict]
rss = {}  # (phase, target) -> kB
meta = {}
startup = None
with open(path) as f:
    for line in f:
        cols = line.rstrip("\n").split("\t")
        if cols[0] == "wrk":
            wrk[(cols[2], cols[3])].append(kv(cols[4]))
            by_round[(cols[2], cols[3])][cols[1]] = kv(cols[4])["rps"]
        elif cols[0] == "pacer":
            pacer[cols[3]].append(kv(cols[4]))
        elif cols[0] == "rss":
            rss[(cols[1], cols[2])] = int(cols[3])
        elif cols[0] == "meta":
            meta[cols[1]] = cols[2]
        elif cols[0] == "startup":
            startup = kv(cols[2])


def med(runs, key):
    return statistics.median(r[key] for r in runs)


def row(scenario, target):
    runs = wrk.get((scenario, target), [])
    if not runs:
        return None
    return {
        "rps": med(runs, "rps"),
        "p50": med(runs, "p50_us") / 1000,
        "p99": med(runs, "p99_us") / 1000,
        "errors": int(sum(r["errors"] for r in runs)),
        "requests": int(sum(r["requests"] for r in runs)),
    }


def ratio(of, to):
    """Median over the rounds that measured both of rps(of) / rps(to)."""
    a, b = by_round.get(of, {}), by_round.get(to, {})
    qs = [a[k] / b[k] for k in a if k in b and b[k] > 0]
    return statistics.median(qs) if qs else None


NAMES = {
    "static": "baseline: hyper, static JSON",
    "static_h": "baseline: hyper, static JSON + the server's headers",
    "verify": "baseline: hyper + jsonwebtoken",
    "sqlite": "server: SQLite + moka",
    "postgres": "server: PostgreSQL + Redis",
}
ok = lambda b: "yes" if b else "**no**"

lines = []
w = lines.append
w(f"Load benchmark: wrk -t{threads} -c{conns} -d{duration}s, loopback, "
  f"{rounds} round(s) (medians), commit {commit}, "
  f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC.")
w(f"Machine load (1/5/15 min) at start: {meta.get('load_start', '?')}; "
  f"at end: {meta.get('load_end', '?')}.")
w("")
w("| Scenario | Server | req/s | p50 ms | p99 ms | errors | ratio | target | met |")
w("|---|---|---:|---:|---:|---:|---:|---|---|")

base_static = row("health", "static")
base_verify = row("verify", "verify")


def emit(scenario_label, target, r, ratio=None, target_text="", met=None):
    ratio_s = f"{ratio:.2f}×" if ratio is not None else "—"
    met_s = "" if met is None else ok(met)
    w(f"| {scenario_label} | {NAMES.get(target, target)} | {r['rps']:,.0f} | {r['p50']:.2f} | "
      f"{r['p99']:.2f} | {r['errors']} | {ratio_s} | {target_text} | {met_s} |")


base_static_h = row("health", "static_h")
if base_static:
    emit("GET /health", "static", base_static)
if base_static and base_static_h:
    emit("GET /health", "static_h", base_static_h,
         ratio(("health", "static_h"), ("health", "static")),
         "(information: the headers' own cost)")
for t in ("sqlite", "postgres"):
    r = row("health", t)
    if r and base_static:
        q = ratio(("health", t), ("health", "static"))
        extra = ""
        if base_static_h:
            extra = f" ({ratio(('health', t), ('health', 'static_h')):.2f}× static + headers)"
        emit("GET /health", t, r, q, "≥ 0.9× static" + extra, q >= 0.9)
if base_verify:
    emit("POST verify", "verify", base_verify)
idle = {}
for t in ("sqlite", "postgres"):
    r = row("verify", t)
    if r and base_verify:
        idle[t] = r
        q = ratio(("verify", t), ("verify", "verify"))
        good = q >= 0.8 and r["p99"] <= 5 and r["errors"] == 0
        emit("POST /auth/verify", t, r, q, "≥ 0.8× verify, p99 ≤ 5 ms, 0 errors", good)
for t in ("sqlite", "postgres"):
    r = row("profile", t)
    if r and base_verify:
        q = ratio(("profile", t), ("verify", "verify"))
        emit("GET /auth/profile (warm)", t, r, q, "≥ 0.6× verify", q >= 0.6 and r["errors"] == 0)
for t in ("sqlite", "postgres"):
    r = row("mixed", t)
    if r and t in idle:
        q = ratio(("mixed", t), ("verify", t))
        good = q >= 0.7 and r["p99"] <= 10 and r["errors"] == 0
        emit(f"POST /auth/verify + {login_rate} logins/s", t, r, q,
             "≥ 0.7× idle verify, p99 ≤ 10 ms", good)

if pacer:
    w("")
    w(f"Paced password logins during the mixed scenario (target {login_rate}/s):")
    w("")
    w("| Server | sent | ok | errors | rate /s | p50 ms | p99 ms |")
    w("|---|---:|---:|---:|---:|---:|---:|")
    for t, runs in pacer.items():
        w(f"| {NAMES.get(t, t)} | {int(sum(r['sent'] for r in runs))} | "
          f"{int(sum(r['ok'] for r in runs))} | {int(sum(r['errors'] for r in runs))} | "
          f"{med(runs, 'rate'):.1f} | {med(runs, 'p50_ms'):.1f} | {med(runs, 'p99_ms'):.1f} |")

w("")
w("| RSS (VmRSS) | idle | after setup | after all load | target |")
w("|---|---:|---:|---:|---|")
for t in ("static", "static_h", "verify", "sqlite", "postgres"):
    idle_kb, setup_kb, after_kb = rss.get(("idle", t)), rss.get(("setup", t)), rss.get(("after", t))
    fmt = lambda kb: "—" if kb is None else f"{kb / 1024:.1f} MB"
    target = ""
    if t in ("sqlite", "postgres") and idle_kb and after_kb:
        target = (f"≤ 20 MB idle ({ok(idle_kb / 1024 <= 20)}), "
                  f"≤ 40 MB after load ({ok(after_kb / 1024 <= 40)})")
    w(f"| {NAMES[t]} | {fmt(idle_kb)} | {fmt(setup_kb)} | {fmt(after_kb)} | {target} |")

if startup:
    w("")
    w("| Start-up to /ready (SQLite, migrations applied) | median | min | max | target |")
    w("|---|---:|---:|---:|---|")
    m = startup["median_ms"]
    w(f"| 5 starts | {m:.0f} ms | {startup['min_ms']:.0f} ms | {startup['max_ms']:.0f} ms | "
      f"≤ 300 ms ({ok(m <= 300)}) |")

print("\n".join(lines))

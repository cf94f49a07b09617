#!/usr/bin/env python3
"""samples/ against a live kwire (issue 12).

  - every config in samples/config loads (`kwire proxy -c FILE
    --print-config`), and so does the packaged /etc/kwire/kwire.yaml;
    every rules file in samples/rules passes `kwire rules check`;
  - a kwire proxy in front of a mock cluster, with an access log and the
    admin endpoint, carries kcat traffic; then every metric the Grafana
    dashboard queries exists in its /metrics, and every label the dashboard
    groups or names series by is on those metrics;
  - every dashboard query parses as PromQL, and the alert rules pass
    `promtool check rules`, use only metrics and labels that exist, and
    their unit tests (kwire-alerts.test.yml) pass `promtool test rules`:
    each alert fires when it should and not before.
promtool comes from Debian's prometheus package (tools/install-deps.sh puts
the binary in ~/.cache/kwire/promtool).
"""
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

KWIRE = os.environ["KWIRE_BIN"]
SRC = os.environ["KWIRE_SRC"]
SAMPLES = os.path.join(SRC, "samples")
PROMTOOL = os.path.join(os.environ.get("KWIRE_CACHE", os.path.expanduser("~/.cache/kwire")),
                        "promtool", "promtool")
IGNORED_LABELS = {"le", "instance", "job", "__name__"}
failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg)


def metrics_of(expr):
    return set(re.findall(r"\b(kwire_[a-z_]+)\b", expr))


def labels_of(expr, legend=""):
    labs = set()
    for m in re.finditer(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
        labs |= {x.strip() for x in m.group(1).split(",") if x.strip()}
    for m in re.finditer(r"\{([^}]*)\}", expr):
        labs |= set(re.findall(r"([a-z_]+)\s*(?:=~|!~|!=|=)", m.group(1)))
    labs |= set(re.findall(r"\{\{\s*([a-z_]+)\s*\}\}", legend))
    labs |= set(re.findall(r"\$labels\.([a-z_]+)", legend))
    return labs - IGNORED_LABELS


# ---- configs ----
confs = sorted(glob.glob(os.path.join(SAMPLES, "config", "**", "*.yaml"), recursive=True))
confs.append(os.path.join(SRC, "packaging", "kwire.yaml"))
for c in confs:
    # The packaged file leaves upstream to the operator; give it one.
    p = subprocess.run([KWIRE, "proxy", "-c", c, "-u", "127.0.0.1:9", "--print-config"],
                       capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        fail("%s does not load: %s" % (os.path.relpath(c, SRC), p.stderr.strip()))
    elif "kwire.yaml" not in c:
        # Without the flag, the sample's own upstream must be there.
        p = subprocess.run([KWIRE, "proxy", "-c", c, "--print-config"], capture_output=True,
                           text=True, timeout=30)
        if p.returncode != 0 or "upstream:\n  - " not in p.stdout:
            fail("%s has no upstream: %s" % (os.path.relpath(c, SRC), p.stderr.strip()))
    # A config naming a rules file names one that samples/rules provides.
    with open(c) as fh:
        m = re.search(r"^rules:\s*(\S+)", fh.read(), re.M)
    if m and "packaging" not in c:
        want = os.path.join(SAMPLES, "rules", "kwire-" + os.path.basename(m.group(1)))
        if not os.path.exists(want):
            fail("%s names rules %s, but samples/rules has no %s" %
                 (os.path.relpath(c, SRC), m.group(1), os.path.relpath(want, SRC)))
print("%d sample configs load" % len(confs))
for r in sorted(glob.glob(os.path.join(SAMPLES, "rules", "*.yaml"))):
    p = subprocess.run([KWIRE, "rules", "check", r], capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        fail("%s: kwire rules check: %s" % (os.path.relpath(r, SRC), p.stderr.strip()))
    else:
        print("%s: kwire rules check OK" % os.path.relpath(r, SRC))

# ---- a live kwire ----
tmp = tempfile.mkdtemp()
log = os.path.join(tmp, "access.log")
px = subprocess.Popen([KWIRE, "proxy", "-u", "mock", "-l", "127.0.0.1:0", "--admin", "127.0.0.1:0",
                       "--log-file", log, "--workers", "1"], stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE, text=True)
try:
    listen = admin = None
    t0 = time.time()
    while time.time() - t0 < 30 and not (listen and admin):
        line = px.stdout.readline()
        if not line:
            break
        if line.startswith("LISTEN "):
            listen = line.split()[1]
        elif line.startswith("ADMIN "):
            admin = line.split()[1]
    if not (listen and admin):
        raise SystemExit("FAIL: kwire proxy did not start: %s" % px.stderr.read())
    r = subprocess.run(["kcat", "-b", listen, "-P", "-t", "my-topic"], input="a\nb\nc\n", text=True,
                       capture_output=True, timeout=60)
    if r.returncode != 0:
        raise SystemExit("FAIL: kcat produce: %s" % r.stderr)
    r = subprocess.run(["kcat", "-b", listen, "-C", "-t", "my-topic", "-o", "beginning", "-e", "-q"],
                       capture_output=True, text=True, timeout=60)
    if r.stdout.split() != ["a", "b", "c"] and sorted(r.stdout.split()) != ["a", "b", "c"]:
        raise SystemExit("FAIL: kcat consume got %r: %s" % (r.stdout, r.stderr))
    text = urllib.request.urlopen("http://%s/metrics" % admin, timeout=10).read().decode()
finally:
    px.terminate()
    px.wait(timeout=30)

present = {}  # metric -> set of label names
for line in text.splitlines():
    m = re.match(r"^(kwire_[a-z_]+)(\{([^}]*)\})?\s", line)
    if m:
        present.setdefault(m.group(1), set()).update(re.findall(r'([a-z_]+)="', m.group(3) or ""))
# A family with no sample yet (no decode error so far) still has its TYPE
# line; a histogram's family name stands for its _bucket/_sum/_count.
for fam, typ in re.findall(r"^# TYPE (kwire_[a-z_]+) (\w+)", text, re.M):
    for suffix in (["_bucket", "_sum", "_count"] if typ == "histogram" else [""]):
        present.setdefault(fam + suffix, set())
print("/metrics of a live kwire: %d series names" % len(present))


def check_expr(where, expr, legend=""):
    ms = metrics_of(expr)
    if not ms:
        fail("%s: no kwire metric in %r" % (where, expr))
    for m in sorted(ms):
        if m not in present:
            fail("%s: %s is not in kwire's /metrics" % (where, m))
    have = set().union(*(present.get(m, set()) for m in ms))
    for lab in sorted(labels_of(expr, legend)):
        if lab not in have:
            fail("%s: label %r is on none of %s" % (where, lab, sorted(ms)))


# ---- the dashboard ----
dash_path = os.path.join(SAMPLES, "grafana", "kwire-dashboard.json")
with open(dash_path) as fh:
    dash = json.load(fh)
exprs = []


def walk(panels):
    for p in panels:
        for t in p.get("targets", []):
            exprs.append((p["title"], t["expr"], t.get("legendFormat", "")))
        walk(p.get("panels", []))


walk(dash["panels"])
for v in dash["templating"]["list"]:
    if v.get("type") == "query":
        exprs.append(("variable " + v["name"], v["query"], ""))
if len(exprs) < 20:
    fail("the dashboard has only %d queries" % len(exprs))
for title, e, legend in exprs:
    check_expr("dashboard panel %r" % title, e, legend)
used = set().union(*(metrics_of(e) for _, e, _ in exprs))
for want in ["kwire_requests_total", "kwire_errors_total", "kwire_request_latency_seconds_bucket",
             "kwire_client_bytes_received_total", "kwire_connections_active",
             "kwire_topic_produce_bytes_total", "kwire_topic_fetch_bytes_total"]:
    if want not in used:
        fail("the dashboard does not show %s" % want)
print("dashboard: %d queries over %d metrics, all in /metrics" % (len(exprs), len(used)))

# ---- PromQL: the dashboard's queries as recording rules, and the alerts ----
if not os.access(PROMTOOL, os.X_OK):
    fail("no promtool at %s (tools/install-deps.sh)" % PROMTOOL)
else:
    rules = os.path.join(tmp, "dashboard-rules.yml")
    with open(rules, "w") as fh:
        fh.write("groups:\n  - name: dashboard\n    rules:\n")
        for i, (_, e, _) in enumerate(exprs):
            if e.startswith("label_values("):
                continue
            q = e.replace("$__rate_interval", "5m").replace("$instance", ".*")
            fh.write("      - record: kwire:dashboard_%d\n        expr: %s\n" % (i, json.dumps(q)))
    for args, what in [(["check", "rules", rules], "the dashboard's queries"),
                       (["check", "rules", os.path.join(SAMPLES, "prometheus", "kwire-alerts.yml")],
                        "the alert rules")]:
        r = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            fail("promtool: %s: %s%s" % (what, r.stdout, r.stderr))
        else:
            print("promtool check rules: %s OK" % what)
    alerts_path = os.path.join(SAMPLES, "prometheus", "kwire-alerts.yml")
    with open(alerts_path) as fh:
        alerts_text = fh.read()
    names = re.findall(r"^\s*- alert: (\S+)", alerts_text, re.M)
    for want in ["KwireDecodeErrorsRising", "KwireUpstreamConnectFailures", "KwireAccessLogDrops",
                 "KwireHighP99Latency"]:
        if want not in names:
            fail("no alert %s" % want)
    for block in re.split(r"^\s*- alert: ", alerts_text, flags=re.M)[1:]:
        name = block.split()[0]
        m = re.search(r"expr: \|?\s*\n?(.*?)\n\s*for:", block, re.S)
        if m:
            check_expr("alert %s" % name, m.group(1), block)
    test_path = os.path.join(SAMPLES, "prometheus", "kwire-alerts.test.yml")
    with open(test_path) as fh:
        tested = set(re.findall(r"alertname: (\S+)", fh.read()))
    for n in names:
        if n not in tested:
            fail("alert %s has no unit test in kwire-alerts.test.yml" % n)
    r = subprocess.run([PROMTOOL, "test", "rules", test_path], capture_output=True, text=True,
                       timeout=60, cwd=os.path.dirname(test_path))
    if r.returncode != 0:
        fail("promtool test rules: %s%s" % (r.stdout, r.stderr))
    else:
        print("promtool test rules: %d alerts fire as tested" % len(names))

if failures:
    print("%d failure(s)" % len(failures))
    sys.exit(1)
print("OK")

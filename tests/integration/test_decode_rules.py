"""kwire decode --rules: the rules engine over real client captures.

The expected counts are not taken from the engine: they are read off the
same capture's plain `--format json` decode (which requests name which
topic, with which codec, which group), and the rules are written so that
each section has a known answer:
- access: every Produce to kcat-codecs is denied;
- policies: lz4 or zstd only on kcat-codecs: the none, gzip and snappy
  producers are refused with UNSUPPORTED_COMPRESSION_TYPE;
- audit: every request naming a kcat-grp group is audited;
- quotas: a tiny request rate throttles, a huge one never does.
A broken rules file fails with FILE:LINE:COL and exit status 1.
"""
import json
import os
import subprocess
import sys
import tempfile

KWIRE = os.environ.get("KWIRE_BIN")
DATA = os.environ.get("KWIRE_DATA")
if not KWIRE or not DATA:
    print("KWIRE_BIN/KWIRE_DATA not set (run through ctest)", file=sys.stderr)
    sys.exit(77)
CAP = os.path.join(DATA, "clients", "kcat.pcapng")


def decode(*args):
    p = subprocess.run([KWIRE, "decode", *args, CAP], capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise AssertionError(f"kwire decode {args}: exit {p.returncode}\n{p.stderr}")
    return p.stdout


def requests():
    """(api, body) of every request in the capture, from the plain decoder."""
    out = []
    for line in decode("--format", "json").splitlines():
        o = json.loads(line)
        if o.get("direction") == "request":
            out.append(o)
    return out


def topics_of(req):
    return [t.get("Name") for t in req.get("body", {}).get("TopicData", [])]


def codecs_of(req):
    cs = set()
    for t in req.get("body", {}).get("TopicData", []):
        for p in t.get("PartitionData", []):
            for b in (p.get("Records") or {}).get("batches", []):
                cs.add(b["codec"])
    return cs


def groups_of(req):
    body = req.get("body", {})
    if isinstance(body.get("GroupId"), str):
        return [body["GroupId"]]
    # FindCoordinator names a group by its Key when KeyType is 0 (or absent, v0).
    if req["api"] == "FindCoordinator" and body.get("KeyType", 0) == 0:
        return [k for k in [body.get("Key")] + body.get("CoordinatorKeys", []) if k]
    return []


def rules_json(yaml_text):
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(yaml_text)
        path = f.name
    try:
        lines = decode("--rules", path, "--format", "json").splitlines()
    finally:
        os.unlink(path)
    acts = [json.loads(x) for x in lines]
    report = [a for a in acts if "rules" in a]
    assert len(report) == 1, "one rules report at the end"
    return [a for a in acts if "rules" not in a], report[0]["rules"]


def main():
    reqs = requests()
    produces = [r for r in reqs if r["api"] == "Produce"]
    to_codecs = [r for r in produces if "kcat-codecs" in topics_of(r)]
    weak = [r for r in to_codecs if codecs_of(r) & {"none", "gzip", "snappy"}]
    grp = [r for r in reqs if any(g.startswith("kcat-grp") for g in groups_of(r))]
    assert len(to_codecs) == 5 and len(weak) == 3, (len(to_codecs), len(weak))
    assert grp, "the capture has group requests"

    acts, rep = rules_json(
        "access:\n"
        "  - name: no-codecs\n"
        "    match: {api: Produce, topic: kcat-codecs}\n"
        "    deny: true\n")
    denies = [a for a in acts if a["action"] == "deny"]
    assert len(denies) == len(to_codecs), (len(denies), len(to_codecs))
    assert all(a["error"] == "TOPIC_AUTHORIZATION_FAILED" and a["rule"] == "no-codecs" and
               a["topic"] == "kcat-codecs" for a in denies)
    assert sorted((a["client"], a["correlation_id"]) for a in denies) == \
        sorted((r["client"], r["correlation_id"]) for r in to_codecs)
    assert rep["refused"] == len(to_codecs) and rep["requests"] == len(reqs), rep

    acts, rep = rules_json(
        "policies:\n"
        "  - name: strong-codecs\n"
        "    match: {topic: kcat-codecs}\n"
        "    require: {compression: [lz4, zstd]}\n"
        "audit:\n"
        "  - name: groups\n"
        "    match: {group: \"kcat-grp*\"}\n"
        "    log: summary\n")
    refusals = [a for a in acts if a["action"] == "refuse"]
    assert len(refusals) == len(weak), (len(refusals), len(weak))
    assert all(a["error"] == "UNSUPPORTED_COMPRESSION_TYPE" for a in refusals)
    audits = [a for a in acts if a["action"] == "audit"]
    assert len(audits) == len(grp), (len(audits), len(grp))

    acts, rep = rules_json("quotas:\n  - name: slow\n    requests_per_sec: 0.5\n")
    assert rep["throttled"] > 0 and all(a["action"] == "throttle" for a in acts)
    acts, rep = rules_json("quotas:\n  - name: fast\n    requests_per_sec: 1000000\n")
    assert rep["throttled"] == 0 and not acts

    # The text report: a line per action and the table.
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write("access:\n  - name: no-codecs\n    match: {topic: kcat-codecs, api: Produce}\n"
                "    deny: true\n")
        path = f.name
    text = decode("--rules", path)
    assert text.count("deny by access rule 'no-codecs'") == len(to_codecs), text
    assert "requests judged" in text
    # A broken file: FILE:LINE:COL, exit 1, nothing decoded.
    with open(path, "w") as f:
        f.write("access:\n  - match: {topik: x}\n    deny: true\n")
    p = subprocess.run([KWIRE, "decode", "--rules", path, CAP], capture_output=True, text=True)
    os.unlink(path)
    assert p.returncode == 1, p
    assert f"{path}:2:13: unknown match key 'topik'" in p.stderr, p.stderr
    print("1 passed, 0 failed")


if __name__ == "__main__":
    main()

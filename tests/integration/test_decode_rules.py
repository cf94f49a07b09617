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

rewrite, mirror and tap (check_rewrite_mirror_tap), read off the same
decode: a names prefix maps every topic (Produce's kcat-codecs is
t.kcat-codecs), a header added to and one removed from every record of the
Produce requests to kcat-codecs, a mirror of the cluster's names copies
exactly the records whose Produce the capture shows answered without error,
to dr.t.TOPIC on the same partitions (a mirror rule on the client's name
copies nothing), and a tap rule taps every Produce request.
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


def requests(direction="request"):
    """(api, body) of every request in the capture, from the plain decoder."""
    out = []
    for line in decode("--format", "json").splitlines():
        o = json.loads(line)
        if o.get("direction") == direction:
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
    report = [a for a in acts if "action" not in a]
    assert len(report) == 1, "one rules report at the end"
    return [a for a in acts if "rules" not in a], report[0]["rules"]


def check_rewrite_mirror_tap(reqs):
    resps = {(r["client"], r["correlation_id"]): r for r in requests("response")}
    produces = [r for r in reqs if r["api"] == "Produce"]
    acts, rep = rules_json(
        "rewrite:\n"
        "  - name: tenant\n"
        "    match: {client_id: rdkafka}\n"
        "    prefix: t.\n"
        "  - name: tag\n"
        "    match: {api: Produce, topic: kcat-codecs}\n"
        "    headers: {add: {x-dry: \"${client_id}\"}, remove: [trace]}\n"
        "mirror:\n"
        "  - name: dr\n"
        "    match: {topic: \"t.kcat-*\"}\n"
        "    topic: \"dr.{topic}\"\n"
        "    to: {bootstrap: \"127.0.0.1:1\"}\n"
        "  - name: client-names\n"
        "    match: {topic: kcat-codecs}\n"
        "    to: {bootstrap: \"127.0.0.1:1\"}\n"
        "tap:\n"
        "  - name: produce-tap\n"
        "    match: {api: Produce}\n"
        "    to: /var/log/kwire/produce.pcapng\n")
    key = {(a["client"], a["correlation_id"]): a for a in acts if a["action"] == "map"}
    named = [r for r in reqs if r["api"] in ("Produce", "Metadata", "Fetch", "ListOffsets")
             and r.get("body") and (topics_of(r) or r["body"].get("Topics"))]
    assert named and all((r["client"], r["correlation_id"]) in key for r in named), \
        "every request naming a topic is mapped"
    want_mirror, want_parts = 0, set()
    for r in produces:
        recs, trace = 0, 0
        for t in r["body"]["TopicData"]:
            for p in t["PartitionData"]:
                n = sum(b["record_count"] for b in p["Records"]["batches"])
                recs += n
                trace += sum(1 for b in p["Records"]["batches"] for x in b["records"]
                             if any(h["key"] == "trace" for h in x["headers"]))
                answer = resps.get((r["client"], r["correlation_id"]))
                errs = [q["ErrorCode"] for rt in (answer or {}).get("body", {}).get("Responses", [])
                        if rt["Name"] == t["Name"] for q in rt["PartitionResponses"]
                        if q["Index"] == p["Index"]]
                if errs == [0]:
                    want_mirror += n
                    want_parts.add((r["client"], r["correlation_id"], p["Index"], n))
        m = key[(r["client"], r["correlation_id"])]
        assert m["names"] == [{"kind": "topic", "client": t, "cluster": "t." + t}
                              for t in topics_of(r)], m
        rw = [a for a in acts if a["action"] == "rewrite" and
              (a["client"], a["correlation_id"]) == (r["client"], r["correlation_id"])]
        if topics_of(r) != ["kcat-codecs"]:
            assert not rw, rw
            continue
        assert len(rw) == 1 and rw[0]["changed"] == rw[0]["records"] == recs, (rw, recs)
        hdr = {h["name"]: h for h in rw[0]["headers"]}
        assert hdr["x-dry"]["added"] == recs and hdr.get("trace", {}).get("removed", 0) == trace \
            and set(hdr) <= {"x-dry", "trace"}, (hdr, recs, trace)
    mirrored = [a for a in acts if a["action"] == "mirror"]
    assert all(a["rule"] == "dr" and a["to_topic"] == "dr.t." + a["topic"] and
               a["partitioning"] == "same" for a in mirrored), mirrored
    assert want_mirror > 0 and sum(a["records"] for a in mirrored) == want_mirror, \
        (want_mirror, mirrored)
    assert {(a["client"], a["correlation_id"], p["partition"], p["records"])
            for a in mirrored for p in a["partitions"]} == want_parts
    skipped = sum(a["records"] for a in acts if a["action"] == "skip")
    assert skipped + want_mirror == sum(b["record_count"] for r in produces
                                        for t in r["body"]["TopicData"]
                                        for p in t["PartitionData"]
                                        for b in p["Records"]["batches"]), skipped
    taps = sorted((a["client"], a["correlation_id"]) for a in acts if a["action"] == "tap")
    assert taps == sorted((r["client"], r["correlation_id"]) for r in produces), taps
    by_rule = {e["rule"]: e for e in rep["by_rule"]}
    assert by_rule["dr"]["records"] == want_mirror and by_rule["client-names"]["records"] == 0 \
        and by_rule["produce-tap"]["matched"] == len(produces), by_rule
    assert rep["mirrored_records"] == want_mirror and rep["tapped"] == len(produces), rep


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
    check_rewrite_mirror_tap(reqs)
    print("2 passed, 0 failed")


if __name__ == "__main__":
    main()

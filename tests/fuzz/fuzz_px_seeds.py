# Generates the seed corpora of fuzz_px_rewrite, fuzz_tree_edit and
# fuzz_px_conf from real data:
#   python3 tests/fuzz/fuzz_px_seeds.py SHARED_DIR
# Responses (and request bodies) come from the clients' conversations in
# tests/data/clients/*.conv (real bytes: kcat, kafka-python, confluent-kafka
# against the mock cluster); the YAML seeds are docs/proxy.md's examples.
import glob, json, os, re, sys

src = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(os.path.dirname(src))
shared = sys.argv[1]
corpus = os.path.join(src, "corpus")

REWRITE = {3: 0, 10: 1, 60: 2, 0: 3, 1: 4, 18: 5}  # fuzz_px_rewrite's API index
HOSTS = [b"", b"localhost", b"kwire-proxy.example.com"]


def specs():
    """{(key, is_request): (first flexible version or None, name)}"""
    out = {}
    for p in glob.glob(os.path.join(shared, "kafka-protocol", "message", "*.json")):
        text = "\n".join(re.sub(r"^\s*//.*$", "", l) for l in open(p).read().splitlines())
        j = json.loads(text)
        if j.get("type") not in ("request", "response"):
            continue
        fv = j.get("flexibleVersions", "none")
        first = None if fv == "none" else int(fv.rstrip("+").split("-")[0])
        out[(j["apiKey"], j["type"] == "request")] = first
    return out


def frames(path):
    conns = {}
    cur = None
    for line in open(path):
        line = line.strip()
        if line.startswith("conn "):
            cur = conns.setdefault(line.split()[1], [])
        elif line[:2] in ("C ", "S ") and cur is not None:
            cur.append((line[0], bytes.fromhex(line[2:])))
    return conns


def main():
    flex = specs()
    apis = sorted({k for k, _ in flex})
    for d in ("fuzz_px_rewrite", "fuzz_tree_edit", "fuzz_px_conf"):
        os.makedirs(os.path.join(corpus, d), exist_ok=True)
    seen = set()
    for conv in sorted(glob.glob(os.path.join(root, "tests", "data", "clients", "*.conv"))):
        base = os.path.basename(conv)[:-5]
        for cid, fr in frames(conv).items():
            reqs = {}
            for d, f in fr:
                if len(f) < 12:
                    continue
                if d == "C":
                    key, ver, corr = int.from_bytes(f[4:6], "big", signed=True), \
                        int.from_bytes(f[6:8], "big"), int.from_bytes(f[8:12], "big")
                    cl = int.from_bytes(f[12:14], "big", signed=True)
                    hl = 10 + max(cl, 0)
                    fl = flex.get((key, True))
                    if fl is not None and ver >= fl and key != 7:
                        hl += 1  # empty tagged section (clients send none)
                    reqs[corr] = (key, ver)
                    tag = ("req", key, ver)
                    if tag not in seen and key in apis:
                        seen.add(tag)
                        open(os.path.join(corpus, "fuzz_tree_edit", f"{base}-req-{key}-v{ver}"),
                             "wb").write(bytes([apis.index(key) % 256, ver, 1]) + f[4 + hl:])
                    continue
                corr = int.from_bytes(f[4:8], "big")
                if corr not in reqs:
                    continue
                key, ver = reqs.pop(corr)
                fl = flex.get((key, False))
                hl = 4 + (1 if fl is not None and ver >= fl and key != 18 else 0)
                tag = ("resp", key, ver)
                if tag not in seen and key in apis:
                    seen.add(tag)
                    open(os.path.join(corpus, "fuzz_tree_edit", f"{base}-resp-{key}-v{ver}"),
                         "wb").write(bytes([apis.index(key) % 256, ver, 2]) + f[4 + hl:])
                if key in REWRITE and ("rw",) + tag not in seen:
                    seen.add(("rw",) + tag)
                    h = HOSTS[len(seen) % len(HOSTS)]
                    open(os.path.join(corpus, "fuzz_px_rewrite", f"{base}-{key}-v{ver}"),
                         "wb").write(bytes([REWRITE[key], ver, len(h)]) + h + f)
    doc = open(os.path.join(root, "docs", "proxy.md")).read()
    for i, block in enumerate(re.findall(r"```yaml\n(.*?)```", doc, re.S)):
        open(os.path.join(corpus, "fuzz_px_conf", f"proxy-md-{i}.yaml"), "w").write(block)


main()

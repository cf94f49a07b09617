#!/usr/bin/env python3
"""kwire-gen.py: generate decoder/kd-schema-gen.c and kd-api-keys-gen.h from Kafka's JSON message schemas.

Usage:
    tools/kwire-gen.py [--check] SPEC_DIR OUT_DIR

SPEC_DIR is the kafka-protocol folder: it holds message/*.json (Apache
Kafka's clients/src/main/resources/common/message/) and ERRORS.tsv.
The output is OUT_DIR/kd-schema-gen.c, which fills the types of
decoder/kd-schema-t.h, and OUT_DIR/kd-api-keys-gen.h, an enum naming every
API key.  With --check nothing in OUT_DIR is touched: a fresh output is
written to a temporary file and compared with the committed one;
the exit status is 1 (with a unified diff on stdout) when they differ, 0
when they are equal.

Anything this script does not understand (a version string, a type, an
entityType, a listener, a struct it cannot resolve) is a hard error with a
message naming the file and field: a silently wrong table would make the
decoder misread the wire.

Standard library only; see docs/generator.md.
"""
import argparse
import difflib
import json
import os
import re
import sys
import tempfile

OUT_NAME = "kd-schema-gen.c"
KEYS_NAME = "kd-api-keys-gen.h"
VMAX = "INT16_MAX"

# JSON scalar type -> enum kd_type
PRIM = {
    "bool": "KD_T_BOOL",
    "int8": "KD_T_INT8",
    "int16": "KD_T_INT16",
    "uint16": "KD_T_UINT16",
    "int32": "KD_T_INT32",
    "uint32": "KD_T_UINT32",
    "int64": "KD_T_INT64",
    "float64": "KD_T_FLOAT64",
    "uuid": "KD_T_UUID",
    "string": "KD_T_STRING",
    "bytes": "KD_T_BYTES",
    "records": "KD_T_RECORDS",
}

ENTITY = {
    "topicName": "KD_ENT_TOPIC_NAME",
    "brokerId": "KD_ENT_BROKER_ID",
    "groupId": "KD_ENT_GROUP_ID",
    "producerId": "KD_ENT_PRODUCER_ID",
    "transactionalId": "KD_ENT_TRANSACTIONAL_ID",
}

# Fields that hold secrets (docs/decoder.md "Secrets"): never shown by any
# output, only "[redacted]" and what kd-sasl.h may read of them. Kafka's
# schemas have no such attribute, so the list is kwire's: (message, field).
# Each must exist in the spec; a rename there is an error here.
SENSITIVE = {
    ("SaslAuthenticateRequest", "AuthBytes"),       # PLAIN password, SCRAM proof, tokens
    ("SaslAuthenticateResponse", "AuthBytes"),      # SCRAM salt and nonce, server signature
    ("AlterUserScramCredentialsRequest", "Salt"),
    ("AlterUserScramCredentialsRequest", "SaltedPassword"),
    ("CreateDelegationTokenResponse", "Hmac"),      # the token's password
    ("DescribeDelegationTokenResponse", "Hmac"),
    ("RenewDelegationTokenRequest", "Hmac"),
    ("ExpireDelegationTokenRequest", "Hmac"),
    ("EnvelopeRequest", "RequestData"),             # a forwarded request, any of the above
    ("EnvelopeResponse", "ResponseData"),
}

LISTENER = {
    "zkBroker": "KD_LSN_ZKBROKER",
    "broker": "KD_LSN_BROKER",
    "controller": "KD_LSN_CONTROLLER",
}

# Keys a field may carry (MSG/README.md); anything else is a spec we do not know.
FIELD_KEYS = {
    "name", "type", "versions", "nullableVersions", "tag", "taggedVersions",
    "flexibleVersions", "entityType", "fields", "about", "default", "ignorable",
    "mapKey", "zeroCopy",
}

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")


class GenError(Exception):
    pass


def strip_comments(text):
    """The text with // comments removed, except inside JSON string literals.

    Each comment is replaced by nothing up to (not including) its newline,
    so line numbers in json errors still match the file."""
    out = []
    i = 0
    n = len(text)
    start = 0
    in_str = False
    while i < n:
        c = text[i]
        if in_str:
            if c == "\\":
                i += 2
                continue
            if c == '"':
                in_str = False
            i += 1
        elif c == '"':
            in_str = True
            i += 1
        elif c == "/" and text.startswith("//", i):
            out.append(text[start:i])
            nl = text.find("\n", i)
            i = n if nl < 0 else nl
            start = i
        else:
            i += 1
    out.append(text[start:])
    return "".join(out)


def load_json(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        return json.loads(strip_comments(text))
    except json.JSONDecodeError as e:
        raise GenError(f"{path}: not JSON after stripping comments: {e}") from None


def parse_vers(s, where):
    """A Kafka version string as a (lo, hi) pair of C expressions.

    "N+" -> (N, INT16_MAX), "A-B" -> (A, B), "N" -> (N, N), "none" -> (-1, -1)."""
    if not isinstance(s, str):
        raise GenError(f"{where}: version range must be a string, got {s!r}")
    if s == "none":
        return (-1, -1)
    m = re.fullmatch(r"(\d+)\+", s)
    if m:
        return (int(m.group(1)), VMAX)
    m = re.fullmatch(r"(\d+)-(\d+)", s)
    if m:
        lo, hi = int(m.group(1)), int(m.group(2))
        if lo > hi:
            raise GenError(f"{where}: empty version range {s!r}")
        return (lo, hi)
    m = re.fullmatch(r"\d+", s)
    if m:
        return (int(s), int(s))
    raise GenError(f"{where}: bad version range {s!r}")


def vers_c(v):
    """A version pair in the generated file's shorthand (KV_NONE, KV_FROM, KV)."""
    if v == NONE_V:
        return "KV_NONE"
    if v[1] == VMAX:
        return "KV_FROM(%d)" % v[0]
    return "KV(%d, %d)" % v


NONE_V = (-1, -1)


def check_name(name, where):
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise GenError(f"{where}: name {name!r} is not a plain identifier")
    return name


class Struct:
    """One struct type of one message file, with its resolved fields."""

    def __init__(self, msg, name, fields_json, where):
        self.msg = msg
        self.name = name
        self.fields_json = fields_json
        self.where = where
        self.fields = None  # list of dicts once resolved

    @property
    def cid(self):
        return f"{self.msg}__{self.name}"


class MessageFile:
    """One schema file: its top-level data and a registry of its struct types.

    Kafka's commonStructs and inline struct definitions are scoped to the
    file, so struct names only need to be unique within it."""

    def __init__(self, path, spec):
        self.path = path
        self.spec = spec
        self.name = check_name(spec.get("name"), path)
        self.structs = {}
        for cs in spec.get("commonStructs", []):
            where = f"{path}: commonStructs {cs.get('name')!r}"
            self.register(check_name(cs.get("name"), where), cs.get("fields"), where)
        self.collect(spec.get("fields"), path)
        # The top-level body: named after the message itself.
        # "body" names the top level in C identifiers (Message__body).
        for clash in (self.name, "body"):
            if clash in self.structs:
                raise GenError(f"{path}: a struct type is named {clash}, which the generator reserves")
        self.body = Struct(self.name, "body", spec.get("fields"), path)
        self.structs_order = []

    def register(self, name, fields_json, where):
        if not isinstance(fields_json, list):
            raise GenError(f"{where}: struct {name} has no fields list")
        old = self.structs.get(name)
        if old is not None:
            if old.fields_json != fields_json:
                raise GenError(f"{where}: struct {name} defined twice, differently ({old.where})")
            return
        self.structs[name] = Struct(self.name, name, fields_json, where)
        self.collect(fields_json, where)

    def collect(self, fields_json, where):
        """Register every struct defined inline in fields_json (recursively)."""
        if not isinstance(fields_json, list):
            raise GenError(f"{where}: fields must be a list")
        for f in fields_json:
            if "fields" in f:
                fw = f"{where}: field {f.get('name')!r}"
                t = f.get("type", "")
                base = t[2:] if t.startswith("[]") else t
                if base in PRIM:
                    raise GenError(f"{fw}: primitive type {t!r} with inline fields")
                self.register(check_name(base, fw), f["fields"], fw)

    def resolve(self, st, stack=()):
        """Resolve st's fields (types, versions, sub-structs), children first.

        Appends each struct to structs_order after its children, so that
        emitting in that order needs no forward declarations."""
        if st.fields is not None:
            return
        if st.name in stack:
            raise GenError(f"{st.where}: struct {st.name} contains itself")
        out = []
        seen = set()
        for f in st.fields_json:
            fname = check_name(f.get("name"), f"{st.where}: field")
            where = f"{self.path}: {st.name if st is not self.body else self.name}.{fname}"
            if fname in seen:
                raise GenError(f"{where}: duplicate field name")
            seen.add(fname)
            unknown = set(f) - FIELD_KEYS
            if unknown:
                raise GenError(f"{where}: unknown keys {sorted(unknown)}")
            t = f.get("type")
            if not isinstance(t, str):
                raise GenError(f"{where}: no type")
            is_array = t.startswith("[]")
            base = t[2:] if is_array else t
            sub = None
            if base in PRIM:
                btype = PRIM[base]
            elif base in self.structs:
                btype = "KD_T_STRUCT"
                sub = self.structs[base]
                self.resolve(sub, stack + (st.name,))
            else:
                raise GenError(f"{where}: unknown type {t!r} (not a primitive, not a struct of this file)")
            if "versions" not in f:
                raise GenError(f"{where}: no versions")
            rec = {
                "name": fname,
                "type": "KD_T_ARRAY" if is_array else btype,
                "elem": btype if is_array else "KD_T_NONE",
                "entity": "KD_ENT_NONE",
                "tag": -1,
                "versions": parse_vers(f["versions"], where + " versions"),
                "nullable": NONE_V,
                "tagged": NONE_V,
                "has_flex": 0,
                "flexible": NONE_V,
                "sub": sub,
                "sensitive": (st.msg, fname) in SENSITIVE,
            }
            if rec["sensitive"]:
                SENSITIVE_SEEN.add((st.msg, fname))
            if "entityType" in f:
                ent = f["entityType"]
                if ent not in ENTITY:
                    raise GenError(f"{where}: unknown entityType {ent!r}")
                rec["entity"] = ENTITY[ent]
            if "nullableVersions" in f:
                rec["nullable"] = parse_vers(f["nullableVersions"], where + " nullableVersions")
            if "default" in f:
                rec["dflt"], rec["dflt_null"] = parse_default(f["default"], rec, where)
            if ("tag" in f) != ("taggedVersions" in f):
                raise GenError(f"{where}: tag and taggedVersions must come together")
            if "tag" in f:
                tag = f["tag"]
                # A few schemas quote the tag ("tag": "0"); Kafka's Jackson
                # reader takes both forms, so do we.
                if isinstance(tag, str) and re.fullmatch(r"\d+", tag):
                    tag = int(tag)
                if not isinstance(tag, int) or isinstance(tag, bool) or tag < 0 or tag > 0x7FFFFFFF:
                    raise GenError(f"{where}: bad tag {tag!r}")
                rec["tag"] = tag
                rec["tagged"] = parse_vers(f["taggedVersions"], where + " taggedVersions")
            if "flexibleVersions" in f:
                rec["has_flex"] = 1
                rec["flexible"] = parse_vers(f["flexibleVersions"], where + " flexibleVersions")
            out.append(rec)
        st.fields = out
        self.structs_order.append(st)


INT_TYPES = ("KD_T_INT8", "KD_T_INT16", "KD_T_UINT16", "KD_T_INT32", "KD_T_UINT32",
             "KD_T_INT64")


def parse_default(d, rec, where):
    """A field's "default" as (integer value, is null). Only what a built
    message needs is kept: integers, booleans and null; other defaults (a
    float, a string) are left to the zero value, as before."""
    if isinstance(d, bool):
        d = "true" if d else "false"
    d = str(d).strip()
    if d == "null":
        return 0, 1
    if rec["type"] == "KD_T_BOOL":
        if d not in ("true", "false"):
            raise GenError(f"{where}: bad boolean default {d!r}")
        return (1 if d == "true" else 0), 0
    if rec["type"] in INT_TYPES:
        try:
            return int(d, 0), 0
        except ValueError:
            raise GenError(f"{where}: bad integer default {d!r}")
    return 0, 0


def c_str(s):
    # Names are checked plain identifiers: no escaping is needed.
    assert NAME_RE.match(s) or re.fullmatch(r"[A-Z0-9_]+", s), s
    return '"%s"' % s


def emit_struct(st, lines):
    """C text for one struct: its field array, then the struct object."""
    fields_id = f"{st.cid}_fields"
    if st.fields:
        lines.append(f"static const struct kd_field {fields_id}[] = {{")
        for r in st.fields:
            head = [f".name = {c_str(r['name'])}", f".type = {r['type']}"]
            if r["elem"] != "KD_T_NONE":
                head.append(f".elem = {r['elem']}")
            if r["entity"] != "KD_ENT_NONE":
                head.append(f".entity = {r['entity']}")
            if r["tag"] >= 0:
                head.append(f".tag = {r['tag']}")
            else:
                head.append(".tag = -1")
            if r["sub"] is not None:
                head.append(f".sub = &{r['sub'].cid}")
            tail = [f".versions = {vers_c(r['versions'])}",
                    f".nullable = {vers_c(r['nullable'])}",
                    f".tagged = {vers_c(r['tagged'])}"]
            if r.get("dflt"):
                tail.append(f".dflt = {r['dflt']}LL")
            if r.get("dflt_null"):
                tail.append(".dflt_null = 1")
            if r["has_flex"]:
                tail.append(".has_flex = 1")
            if r["sensitive"]:
                tail.append(".sensitive = 1")
            tail.append(f".flexible = {vers_c(r['flexible'])}")
            lines.append("\t{ " + ", ".join(head) + ",")
            lines.append("\t  " + ", ".join(tail) + " },")
        lines.append("};")
    sname = st.msg if st.name == "body" else st.name
    lines.append(f"static const struct kd_struct {st.cid} = {{")
    lines.append(f"\t.name = {c_str(sname)},")
    lines.append(f"\t.nfields = {len(st.fields)},")
    lines.append(f"\t.fields = {fields_id if st.fields else 'NULL'},")
    lines.append("};")
    lines.append("")


def msgdef_c(mf, indent):
    s = mf.spec
    where = mf.path
    valid = parse_vers(s.get("validVersions"), where + " validVersions")
    flex = parse_vers(s.get("flexibleVersions"), where + " flexibleVersions")
    return (f"{{\n{indent}\t.name = {c_str(mf.name)},\n"
            f"{indent}\t.valid = {vers_c(valid)},\n"
            f"{indent}\t.flexible = {vers_c(flex)},\n"
            f"{indent}\t.body = &{mf.body.cid},\n{indent}}}")


def load_errors(path):
    """ERRORS.tsv rows as a sorted list of (code, name)."""
    rows = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line or (lineno == 1 and line.startswith("code")):
                continue
            cols = line.split("\t")
            if len(cols) != 2 or not re.fullmatch(r"-?\d+", cols[0]) \
                    or not re.fullmatch(r"[A-Z0-9_]+", cols[1]):
                raise GenError(f"{path}:{lineno}: expected 'code<TAB>NAME', got {line!r}")
            code = int(cols[0])
            if not -32768 <= code <= 32767:
                raise GenError(f"{path}:{lineno}: code {code} does not fit int16")
            if code in rows:
                raise GenError(f"{path}:{lineno}: code {code} listed twice")
            rows[code] = cols[1]
    if not rows:
        raise GenError(f"{path}: no error codes")
    return sorted(rows.items())


SENSITIVE_SEEN = set()


def generate(spec_dir):
    """{file name: full text} of kd-schema-gen.c and kd-api-keys-gen.h for the spec in spec_dir."""
    SENSITIVE_SEEN.clear()
    msg_dir = os.path.join(spec_dir, "message")
    if not os.path.isdir(msg_dir):
        raise GenError(f"{msg_dir}: no such folder")
    files = sorted(n for n in os.listdir(msg_dir) if n.endswith(".json"))
    if not files:
        raise GenError(f"{msg_dir}: no *.json schemas")
    reqs, resps, datas = {}, {}, {}
    names = set()
    for n in files:
        path = os.path.join(msg_dir, n)
        spec = load_json(path)
        mf = MessageFile(path, spec)
        if mf.name in names:
            raise GenError(f"{path}: message name {mf.name} used twice")
        names.add(mf.name)
        mf.resolve(mf.body)
        typ = spec.get("type")
        if typ in ("request", "response"):
            key = spec.get("apiKey")
            if not isinstance(key, int) or isinstance(key, bool) or not 0 <= key <= 32767:
                raise GenError(f"{path}: bad apiKey {key!r}")
            table = reqs if typ == "request" else resps
            if key in table:
                raise GenError(f"{path}: apiKey {key} has two {typ}s ({table[key].path})")
            suffix = "Request" if typ == "request" else "Response"
            if not mf.name.endswith(suffix):
                raise GenError(f"{path}: {typ} name {mf.name} does not end in {suffix}")
            table[key] = mf
        elif typ in ("header", "data"):
            datas[mf.name] = mf
        else:
            raise GenError(f"{path}: unknown message type {typ!r}")
    if set(reqs) != set(resps):
        raise GenError(f"request and response keys differ: {sorted(set(reqs) ^ set(resps))}")
    if not reqs:
        raise GenError(f"{msg_dir}: no request schemas")
    for key in reqs:
        if reqs[key].name[:-len("Request")] != resps[key].name[:-len("Response")]:
            raise GenError(f"apiKey {key}: {reqs[key].name} and {resps[key].name} do not pair")
    missing = SENSITIVE - SENSITIVE_SEEN
    if missing:
        raise GenError(f"sensitive fields not in the spec: {sorted(missing)}")
    errors = load_errors(os.path.join(spec_dir, "ERRORS.tsv"))

    ordered_all = [x for k in sorted(reqs) for x in (reqs[k], resps[k])]
    ordered_all += [datas[n] for n in sorted(datas)]

    L = []
    L.append("/* kd-schema-gen.c: GENERATED by tools/kwire-gen.py -- DO NOT EDIT BY HAND.")
    L.append(" *")
    L.append(" * Generated from Apache Kafka's JSON message schemas")
    L.append(" * (clients/src/main/resources/common/message/, Apache License 2.0,")
    L.append(" * Copyright The Apache Software Foundation) and Kafka's error codes")
    L.append(" * (ERRORS.tsv, from Errors.java). Regenerate with `make regen`, i.e.")
    L.append(" *   python3 tools/kwire-gen.py SPEC_DIR decoder")
    L.append(" * The types are in kd-schema-t.h; docs/generator.md maps them to the spec.")
    L.append(" * Struct objects are named Message__StructType (Message__body for the")
    L.append(" * top level); fields use Kafka's own names. */")
    L.append('#include <stddef.h>')
    L.append('#include <stdint.h>')
    L.append("")
    L.append('#include "kd-schema.h"')
    L.append("")
    L.append('/* Version ranges (struct kd_vers): "none", "N+", "A-B" and "N" (= KV(N, N)). */')
    L.append("#define KV_NONE { -1, -1 }")
    L.append("#define KV_FROM(n) { n, INT16_MAX }")
    L.append("#define KV(a, b) { a, b }")
    L.append("")
    L.append("/* The by-key index that kd_api_get() uses (kd-schema.c). */")
    L.append("extern const struct kd_api *const kd_api_by_key[];")
    L.append("extern const unsigned kd_api_by_key_len;")
    L.append("")
    for mf in ordered_all:
        L.append(f"/* ---- {mf.name} ({os.path.basename(mf.path)}) ---- */")
        L.append("")
        for st in mf.structs_order:
            emit_struct(st, L)
        unused = [n for n, st in sorted(mf.structs.items()) if st.fields is None]
        for n in unused:
            L.append(f"/* struct {n} is declared but no field uses it */")
            L.append("")

    L.append("const struct kd_api kd_apis[] = {")
    for k in sorted(reqs):
        rq = reqs[k]
        s = rq.spec
        lsn = s.get("listeners")
        if not isinstance(lsn, list) or not lsn:
            raise GenError(f"{rq.path}: request without listeners")
        bits = []
        for x in lsn:
            if x not in LISTENER:
                raise GenError(f"{rq.path}: unknown listener {x!r}")
            if LISTENER[x] not in bits:
                bits.append(LISTENER[x])
        bits.sort(key=lambda b: list(LISTENER.values()).index(b))
        unstable = s.get("latestVersionUnstable", False)
        if not isinstance(unstable, bool):
            raise GenError(f"{rq.path}: latestVersionUnstable must be true or false")
        dep = NONE_V
        if "deprecatedVersions" in s:
            dep = parse_vers(s["deprecatedVersions"], rq.path + " deprecatedVersions")
        L.append("\t{")
        L.append(f"\t\t.key = {k},")
        L.append(f"\t\t.name = {c_str(rq.name[:-len('Request')])},")
        L.append(f"\t\t.listeners = {' | '.join(bits)},")
        L.append(f"\t\t.unstable_latest = {1 if unstable else 0},")
        L.append(f"\t\t.deprecated = {vers_c(dep)},")
        L.append(f"\t\t.req = {msgdef_c(rq, chr(9) * 2)},")
        L.append(f"\t\t.resp = {msgdef_c(resps[k], chr(9) * 2)},")
        L.append("\t},")
    L.append("};")
    L.append(f"const unsigned kd_napis = {len(reqs)};")
    L.append(f"const int16_t kd_api_key_max = {max(reqs)};")
    L.append("")
    L.append(f"const struct kd_api *const kd_api_by_key[{max(reqs) + 1}] = {{")
    for i, k in enumerate(sorted(reqs)):
        L.append(f"\t[{k}] = &kd_apis[{i}],")
    L.append("};")
    L.append(f"const unsigned kd_api_by_key_len = {max(reqs) + 1};")
    L.append("")
    L.append("/* Headers and data schemas, sorted by name (kd_datadef_get bisects). */")
    L.append("const struct kd_msgdef kd_datadefs[] = {")
    for n in sorted(datas):
        L.append(f"\t{msgdef_c(datas[n], chr(9))},")
    L.append("};")
    L.append(f"const unsigned kd_ndatadefs = {len(datas)};")
    L.append("")
    L.append("/* Error codes, sorted by code (kd_error_name bisects). */")
    L.append("const struct kd_errcode kd_errcodes[] = {")
    for code, name in errors:
        L.append(f"\t{{ {code}, {c_str(name)} }},")
    L.append("};")
    L.append(f"const unsigned kd_nerrcodes = {len(errors)};")
    return {OUT_NAME: "\n".join(L) + "\n", KEYS_NAME: api_keys_header(reqs)}


def upper_snake(name):
    """ApiVersions -> API_VERSIONS, OffsetForLeaderEpoch -> OFFSET_FOR_LEADER_EPOCH."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).upper()


def api_keys_header(reqs):
    """The text of kd-api-keys-gen.h: one enum constant per API key."""
    L = ["/* kd-api-keys-gen.h: GENERATED by tools/kwire-gen.py -- DO NOT EDIT BY HAND.",
         " *",
         " * Kafka's API keys by name (the request schemas' apiKey), so that code",
         " * says KD_API_FETCH rather than 1. Regenerate with `make regen`. */",
         "#ifndef KD_API_KEYS_GEN_H",
         "#define KD_API_KEYS_GEN_H",
         "",
         "enum kd_api_key {"]
    seen = {}
    for key in sorted(reqs):
        const = "KD_API_" + upper_snake(reqs[key].name[:-len("Request")])
        if const in seen:
            raise GenError(f"apiKey {key}: {const} already names apiKey {seen[const]}")
        seen[const] = key
        L.append(f"\t{const} = {key},")
    L += ["};", "", "#endif"]
    return "\n".join(L) + "\n"


def main(argv):
    ap = argparse.ArgumentParser(description="Generate kd-schema-gen.c from Kafka's message schemas.")
    ap.add_argument("--check", action="store_true",
                    help="compare a fresh output with the files in OUT_DIR; exit 1 with a diff if they differ")
    ap.add_argument("spec_dir", metavar="SPEC_DIR", help="kafka-protocol folder (message/*.json, ERRORS.tsv)")
    ap.add_argument("out_dir", metavar="OUT_DIR", help="where kd-schema-gen.c and kd-api-keys-gen.h go")
    args = ap.parse_args(argv)
    try:
        texts = generate(args.spec_dir)
    except (GenError, OSError) as e:
        print(f"kwire-gen: {e}", file=sys.stderr)
        return 2
    if args.check:
        stale = 0
        for name, text in sorted(texts.items()):
            stale |= check_one(os.path.join(args.out_dir, name), text, args.spec_dir)
        return stale
    for name, text in sorted(texts.items()):
        if write_one(args.out_dir, name, text):
            return 2
    return 0


def check_one(out, text, spec_dir):
    """0 when out holds text, else 1 with a unified diff on stdout."""
    # Written to a temporary file first, as the build would, then compared.
    fd, tmp = tempfile.mkstemp(prefix="kwire-gen.", suffix=os.path.splitext(out)[1])
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        with open(tmp, encoding="utf-8") as f:
            fresh = f.read().splitlines(keepends=True)
    finally:
        os.unlink(tmp)
    try:
        with open(out, encoding="utf-8") as f:
            old = f.read().splitlines(keepends=True)
    except OSError as e:
        print(f"kwire-gen: {out}: {e.strerror}", file=sys.stderr)
        old = []
    if old == fresh:
        print(f"kwire-gen: {out} is up to date")
        return 0
    sys.stdout.writelines(difflib.unified_diff(old, fresh, out, "fresh output of " + spec_dir))
    print(f"kwire-gen: {out} differs from a fresh run; run `make regen`", file=sys.stderr)
    return 1


def write_one(out_dir, name, text):
    """Writes out_dir/name atomically; 0, or 1 after printing the error."""
    out = os.path.join(out_dir, name)
    fd, tmp = tempfile.mkstemp(prefix="." + name + ".", suffix=".tmp", dir=out_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except OSError as e:
        os.unlink(tmp)
        print(f"kwire-gen: {out}: {e}", file=sys.stderr)
        return 1
    return 0

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

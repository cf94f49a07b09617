#!/usr/bin/env python3
"""The man pages and `--help` agree (issue 12).

Both are made from cli/help/*.txt, but this test does not trust that: it
compares what the built binary prints with what the built man pages say, and
both with the getopt tables in cli/*.c, so a flag added to the code without
help, or to the help without the code, or a page gone stale, fails here.
  - every flag in `kwire CMD --help` is in kwire-CMD(1), and the reverse;
  - every long option in a cli/*.c getopt table is in its command's --help,
    and every --flag in a --help is in that command's getopt table;
  - every command `kwire --help` lists has a page and a --help;
  - kwire.yaml(5), `kwire proxy --help-config` and the keys the proxy
    prints with --print-config are the same set;
  - groff renders every page without a warning.
"""
import os
import re
import subprocess
import sys

KWIRE = os.environ["KWIRE_BIN"]
BUILD = os.environ["KWIRE_BUILD"]
SRC = os.environ["KWIRE_SRC"]
MAN = os.path.join(BUILD, "man")

FLAG = re.compile(r"(?<![\w/.-])(--[a-z][a-z0-9-]*[a-z0-9]|-[a-zA-Z])(?![\w-])")
failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg)


def run(*args):
    p = subprocess.run([KWIRE, *args], capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        fail("kwire %s exited %d: %s" % (" ".join(args), p.returncode, p.stderr))
    return p.stdout


def roff_text(path):
    """The words of a roff page: requests dropped, escapes undone."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for l in fh:
            l = l.rstrip("\n")
            if l.startswith(".") and not l.startswith(".SH") and not l.startswith(".SS"):
                continue
            l = re.sub(r"\\f[BIRP]", "", l)
            l = l.replace("\\%", "").replace("\\&", "").replace("\\-", "-").replace("\\e", "\\")
            out.append(l)
    return "\n".join(out)


def flags(text):
    return set(FLAG.findall(text))


def getopt_longs(path):
    with open(path, encoding="utf-8") as fh:
        return set(re.findall(r'\{"([a-z][a-z0-9-]*)",\s*(?:no|required|optional)_argument', fh.read()))


# The commands, from `kwire --help`.
top = run("--help")
cmds = re.findall(r"^  ([a-z]+)\s{2,}\S", top, re.M)
if sorted(cmds) != sorted(["version", "proxy", "decode", "sniff", "demo"]) and len(cmds) < 5:
    fail("kwire --help lists %r" % cmds)
if not os.path.exists(os.path.join(MAN, "kwire.1")):
    fail("no kwire(1) in %s" % MAN)
else:
    top_man = roff_text(os.path.join(MAN, "kwire.1"))
    for c in cmds:
        if not re.search(r"^%s$" % c, top_man, re.M):
            fail("kwire(1) does not list the command %s" % c)

src_for = {"proxy": "cmd-proxy.c", "decode": "cmd-decode.c", "sniff": "cmd-decode.c",
           "passwd": "cmd-passwd.c",
           "demo": "cmd-demo.c", "replay": "cmd-replay.c"}
help_longs = {}
for c in cmds:
    h = run(c, "--help")
    if not h.startswith("usage: kwire " + c):
        fail("kwire %s --help does not start with its usage line" % c)
    if c == "version":
        continue  # described in kwire(1), no options
    page = os.path.join(MAN, "kwire-%s.1" % c)
    if not os.path.exists(page):
        fail("kwire %s has no man page %s" % (c, page))
        continue
    hf, mf = flags(h), flags(roff_text(page))
    for f in sorted(hf - mf):
        fail("kwire %s --help has %s, kwire-%s(1) does not" % (c, f, c))
    for f in sorted(mf - hf):
        fail("kwire-%s(1) has %s, kwire %s --help does not" % (c, f, c))
    print("kwire %s: %d flags in --help and in kwire-%s(1)" % (c, len(hf & mf), c))
    help_longs[c] = {f[2:] for f in hf if f.startswith("--")}

# The getopt tables against the help texts.
for fname in sorted(set(src_for.values())):
    table = getopt_longs(os.path.join(SRC, "cli", fname))
    served = [c for c, f in src_for.items() if f == fname and c in help_longs]
    documented = set().union(*(help_longs[c] for c in served)) if served else set()
    for o in sorted(table - documented):
        fail("cli/%s accepts --%s, but no --help of %s mentions it" % (fname, o, "/".join(served)))
    for c in served:
        for o in sorted(help_longs[c] - table):
            fail("kwire %s --help mentions --%s, which cli/%s does not accept" % (c, o, fname))

# kwire.yaml(5): the keys.
conf_help = run("proxy", "--help-config")
help_keys = set(re.findall(r"^  ([a-z_]+): ", conf_help, re.M))
dump = run("proxy", "-u", "127.0.0.1:1", "--admin", "127.0.0.1:1", "--log-file", "/dev/null",
           "--rules", "/dev/null", "--tap", "/dev/null", "--audit-log", "/dev/null",
           "--print-config")
dump_keys = set(re.findall(r"^([a-z_]+):", dump, re.M))
if not dump_keys:
    fail("kwire proxy --print-config printed no keys")
for k in sorted(dump_keys - help_keys):
    fail("--print-config has the key %s, kwire proxy --help-config does not" % k)
for k in sorted(help_keys - dump_keys):
    fail("kwire proxy --help-config has the key %s, --print-config does not" % k)
yaml5 = os.path.join(MAN, "kwire.yaml.5")
if not os.path.exists(yaml5):
    fail("no kwire.yaml(5)")
else:
    man_keys = set(re.findall(r"^([a-z_]+): ", roff_text(yaml5), re.M))
    if man_keys != help_keys:
        fail("kwire.yaml(5) keys %s != --help-config keys %s" % (sorted(man_keys), sorted(help_keys)))
    print("kwire.yaml(5): %d keys, as --print-config and --help-config" % len(man_keys))

# Every page renders cleanly, and the compressed copy that gets installed is current.
pages = sorted(f for f in os.listdir(MAN) if re.match(r".*\.[15]$", f)) if os.path.isdir(MAN) else []
if len(pages) < 7:
    fail("expected 7 man pages in %s, found %r" % (MAN, pages))
for p in pages:
    path = os.path.join(MAN, p)
    r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", path], capture_output=True, text=True)
    if r.returncode != 0 or r.stderr.strip():
        fail("groff warns on %s: %s" % (p, r.stderr.strip()))
    z = subprocess.run(["gzip", "-dc", path + ".gz"], capture_output=True)
    with open(path, "rb") as fh:
        if z.returncode != 0 or z.stdout != fh.read():
            fail("%s.gz is not %s" % (p, p))

if failures:
    print("%d failure(s)" % len(failures))
    sys.exit(1)
print("OK")

"""tools/check-skips.py: skipped tests are listed with their reason, and in
CI a skip fails the run unless its prerequisite is marked optional (issue 8,
item 16). Also: every skip in tests/ says why (a "SKIP: ... (needs: ...)"
line right before it), so the list can name the prerequisite."""
import os
import re
import subprocess
import sys
import tempfile

SRC = os.environ.get("KWIRE_SRC") or os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
CHECK = os.path.join(SRC, "tools", "check-skips.py")

XML = """<?xml version="1.0" encoding="UTF-8"?>
<testsuite tests="3" failures="0" skipped="{n}">
  <testcase name="unit/test_ok" status="run"><system-out>[  PASSED  ] 3 test(s).</system-out></testcase>
  {cases}
</testsuite>
"""
CTEST_SKIP = """<testcase name="integration/test_wire" status="notrun">
  <skipped message="SKIP_RETURN_CODE=77"/>
  <system-out>SKIP: dumpcap on lo needs root (needs: root)
</system-out></testcase>"""
CMOCKA_SKIP = """<testcase name="unit/test_reasm" status="run"><system-out>[ RUN      ] test_vs_tshark
SKIP: no tshark (needs: tshark, tools/install-deps.sh)
[  SKIPPED ] test_vs_tshark
</system-out></testcase>"""
OPTIONAL_SKIP = """<testcase name="integration/test_netns" status="notrun">
  <skipped message="SKIP_RETURN_CODE=77"/>
  <system-out>SKIP: no network namespaces in this container (optional: CAP_SYS_ADMIN)
</system-out></testcase>"""
SILENT_SKIP = """<testcase name="integration/test_quiet" status="notrun">
  <skipped message="SKIP_RETURN_CODE=77"/><system-out></system-out></testcase>"""


def run(cases, ci):
    with tempfile.NamedTemporaryFile("w", suffix=".xml", delete=False) as f:
        f.write(XML.format(n=len(cases), cases="\n".join(cases)))
    env = dict(os.environ)
    env.pop("CI", None)
    if ci:
        env["CI"] = "true"
    r = subprocess.run(["/usr/bin/python3", CHECK, f.name], capture_output=True, text=True,
                       env=env, timeout=30)
    os.unlink(f.name)
    return r.returncode, r.stdout + r.stderr


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


def lint_skip_sites():
    """Every skip in tests/ is preceded (within 3 lines) by a SKIP: reason."""
    bad = []
    pat = re.compile(r"\bskip\(\);|sys\.exit\(SKIP\)|exit 77")
    for d in ("unit", "integration"):
        folder = os.path.join(SRC, "tests", d)
        for name in sorted(os.listdir(folder)):
            if not name.startswith(("test_", "proxy_harness")) or name == "test_check_skips.py":
                continue
            lines = open(os.path.join(folder, name), errors="replace").read().splitlines()
            for i, line in enumerate(lines):
                if not pat.search(line) or line.lstrip().startswith(("#", "//", "*", "/*")):
                    continue
                window = "\n".join(lines[max(0, i - 3):i + 1])
                if "SKIP:" not in window and "skip(" not in window.replace("skip();", ""):
                    bad.append(f"tests/{d}/{name}:{i + 1}: {line.strip()}")
    expect(not bad, "skips that do not say why (print 'SKIP: <why> (needs: <what>)'):\n" +
           "\n".join(bad))


def main():
    rc, out = run([], ci=True)
    expect(rc == 0 and out == "", f"no skip: rc {rc}, output {out!r}")
    # Outside CI: listed, not failed.
    rc, out = run([CTEST_SKIP, CMOCKA_SKIP], ci=False)
    expect(rc == 0, f"outside CI a skip must not fail (rc {rc})")
    expect("2 skipped" in out and "dumpcap on lo needs root (needs: root)" in out and
           "test_vs_tshark" in out, "the skips and their reasons are not listed:\n" + out)
    # In CI: a ctest skip and a cmocka skip each fail the run.
    rc, out = run([CTEST_SKIP], ci=True)
    expect(rc == 1, f"CI: a skipped capture test must fail the run:\n{out}")
    rc, out = run([CMOCKA_SKIP], ci=True)
    expect(rc == 1, f"CI: a skipped cmocka case must fail the run:\n{out}")
    rc, out = run([SILENT_SKIP], ci=True)
    expect(rc == 1 and "no reason given" in out, f"CI: a silent skip must fail:\n{out}")
    # An optional prerequisite may be missing in CI.
    rc, out = run([OPTIONAL_SKIP], ci=True)
    expect(rc == 0 and "optional: CAP_SYS_ADMIN" in out, f"CI: an optional skip failed:\n{out}")
    rc, _ = run([OPTIONAL_SKIP, CTEST_SKIP], ci=True)
    expect(rc == 1, "CI: an optional skip must not hide another one")
    lint_skip_sites()
    print("ok")


if __name__ == "__main__":
    sys.exit(main())

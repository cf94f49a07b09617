#!/usr/bin/python3
"""Lists the tests a ctest run skipped, and fails CI when one was skipped.

    tools/check-skips.py BUILD/ctest.xml      (ctest --output-junit ctest.xml)

A test that cannot run prints why before it skips (exit 77 for ctest, skip()
in cmocka), as one line:

    SKIP: <why> (needs: <prerequisite>)

Everything the suite needs (root, tshark and dumpcap, kcat and the Python
clients, clang, the Kafka spec in ../shared) is installed by
tools/install-deps.sh, so in CI (environment variable CI set and not empty)
a skip is a failure: a capture test must not silently stop running. The one
exception is a prerequisite the test marks as optional:

    SKIP: <why> (optional: <prerequisite>)

Outside CI the skips are listed and the exit status is 0. A skip that says
nothing (no SKIP: line) is listed as "no reason given", and fails CI too.
Exit status: 0, 1 (CI and a skip), 2 (the file cannot be read).
"""
import os
import re
import sys
import xml.etree.ElementTree as ET

SKIP_LINE = re.compile(r"^\s*(?:\[\s*\w+\s*\]\s*)?SKIP: (.*)$", re.M)
CMOCKA_SKIPPED = re.compile(r"^\[\s*SKIPPED\s*\]\s+(\S+)", re.M)


def main(argv):
    if len(argv) != 2:
        print("usage: check-skips.py CTEST_JUNIT_XML", file=sys.stderr)
        return 2
    try:
        root = ET.parse(argv[1]).getroot()
    except (OSError, ET.ParseError) as e:
        print(f"check-skips: {argv[1]}: {e}", file=sys.stderr)
        return 2
    ci = bool(os.environ.get("CI"))
    skips = []  # (test, what, reasons)
    for tc in root.iter("testcase"):
        name = tc.get("name", "?")
        out = "".join(e.text or "" for e in tc.iter() if e.tag in ("system-out", "system-err"))
        reasons = SKIP_LINE.findall(out)
        if tc.find("skipped") is not None or tc.get("status") == "notrun":
            if tc.find("skipped") is not None:
                skips.append((name, "whole test", reasons))
            continue
        for case in CMOCKA_SKIPPED.findall(out):
            skips.append((name, case, reasons))
    if not skips:
        return 0
    bad = 0
    print(f"{len(skips)} skipped:")
    for name, what, reasons in skips:
        why = "; ".join(reasons) if reasons else "no reason given"
        optional = bool(reasons) and all("(optional:" in r for r in reasons)
        if ci and not optional:
            bad += 1
        print(f"  {name} ({what}): {why}")
    if bad:
        print(f"check-skips: CI is set and {bad} test(s) skipped for a prerequisite "
              "tools/install-deps.sh provides: that is a failure here", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

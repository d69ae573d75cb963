"""One line of totals over pytest junit files: `pytest: N passed, N failed, N skipped` (scripts/test
runs the suite in two pytest processes; this is the whole suite's count). A test with a failure or
an error (in its setup, call or teardown) is failed once."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET


def totals(paths: list[str]) -> dict[str, int]:
    t = {"passed": 0, "failed": 0, "skipped": 0}
    for path in paths:
        try:
            root = ET.parse(path).getroot()
        except (OSError, ET.ParseError) as e:
            print(f"junit_totals: {path}: {e}", file=sys.stderr)
            continue
        for case in root.iter("testcase"):
            tags = {child.tag for child in case}
            t["failed" if tags & {"failure", "error"} else "skipped" if "skipped" in tags else "passed"] += 1
    return t


if __name__ == "__main__":
    t = totals(sys.argv[1:])
    print(f"pytest: {t['passed']} passed, {t['failed']} failed, {t['skipped']} skipped")

"""Closing lines of tests/schemathesis/run: requests sent and failures found by each pass.

    summary.py REPORT_DIR NAME=EXIT_STATUS...

REPORT_DIR/NAME/ holds a pass's report.json (schemathesis' JSON report), requests.json (the
request tally written by hooks.py), seconds (its duration) and, when the caller's key stopped
working during the pass, key-lost. Exits 1 when any pass failed, errored or exited non-zero.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def main() -> int:
    reports = Path(sys.argv[1])
    total_requests = total_generated = total_failures = total_errors = 0
    ok = True
    for arg in sys.argv[2:]:
        name, _, status = arg.partition("=")
        directory = reports / name
        report = load(directory / "report.json")
        tally = load(directory / "requests.json") or {}
        seconds = (directory / "seconds").read_text().strip() if (directory / "seconds").exists() else "?"
        requests = int(tally.get("requests", 0))
        total_requests += requests
        if report is None:
            print(f"{name}: no report (schemathesis exited {status} before writing one)")
            ok = False
            continue
        cases = report["test_cases"]
        failures = sum(group["count"] for group in report["failures"])
        errors = sum(group["count"] for group in report["errors"])
        total_generated += cases["generated"]
        total_failures += failures
        total_errors += errors
        print(
            f"{name}: {requests} requests sent, {cases['generated']} test cases generated, "
            f"{failures} failures ({cases['unique_failures']} unique), {errors} errors, "
            f"{seconds} s, schemathesis exit {status}"
        )
        print(f"  statuses: {json.dumps(tally.get('by_status', {}))}")
        print(f"  phases:   {json.dumps(tally.get('by_phase', {}))}")
        for group in report["failures"]:
            operations = ", ".join(group["operations"])
            print(f"  {group['code']} {group['title']}: {group['count']} ({operations})")
        for group in report["errors"]:
            print(f"  error: {group['title']}: {group['count']}")
        if (directory / "key-lost").exists():
            print(f"  the {name} key stopped working during the pass")
            slipped = tally.get("caller_requests_not_filtered") or []
            for request in slipped:
                print(f"    sent on the caller's own key or user: {request}")
            ok = False
        if status != "0" or failures or errors:
            ok = False
    print(
        f"schemathesis: {total_requests} requests sent ({total_generated} test cases generated), "
        f"{total_failures} failures, {total_errors} errors"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

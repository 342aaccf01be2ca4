"""The closing lines of `make test`: what each Debian release's run counted, then the total.

Reads the JUnit files that the two runs wrote (this machine's release, then the chroot's)
and exits non-zero when either run failed or counted nothing, so that a release whose tests
never ran cannot pass silently.

    summary.py STATUS_HERE STATUS_OTHER
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

RUNS = (
    ("this machine", Path("/var/cache/twostep/results-native.xml")),
    ("chroot", Path("/var/cache/twostep/results-other.xml")),
)
"""Where `make test-here` and `make test-other-release` leave their JUnit files; each
removes its own before it runs, so a file here is always from this run."""


def _counts(path: Path) -> tuple[str, int, int, int] | None:
    """(release, passed, failed, skipped), or None when the file is missing or unreadable."""
    try:
        root = ET.parse(path).getroot()  # noqa: S314 - written by our own pytest run
    except (OSError, ET.ParseError):
        return None
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is None:
        return None
    total = int(suite.get("tests", "0"))
    failed = int(suite.get("failures", "0")) + int(suite.get("errors", "0"))
    skipped = int(suite.get("skipped", "0"))
    release = "unknown release"
    for prop in suite.iter("property"):
        if prop.get("name") == "release":
            release = prop.get("value", release)
    return release, total - failed - skipped, failed, skipped


def main(argv: list[str], runs: tuple[tuple[str, Path], ...] = RUNS) -> int:
    statuses = [int(a) for a in argv[1:3]]
    passed = failed = 0
    ok = True
    releases: list[str] = []
    print()
    for (where, path), status in zip(runs, statuses, strict=True):
        counts = _counts(path)
        if counts is None:
            print(f"{where}: its tests did not run (exit {status}); see the output above")
            ok = False
            failed += 1
            continue
        release, p, f, s = counts
        print(f"{release} ({where}): {p} passed, {f} failed, {s} skipped (exit {status})")
        releases.append(release)
        passed += p
        failed += f
        if status != 0 or f or p == 0:
            ok = False
            failed += 0 if f else 1
    if len(releases) == 2 and releases[0] == releases[1]:
        print(f"both runs were on {releases[0]}: the chroot is not the other release")
        ok = False
        failed += 1
    print(f"total: {passed} passed, {failed} failed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""A short run of `make bench`, so the benchmark cannot rot: it must measure every path
and print its table. Its figures are not judged here (see docs/performance.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pam_twostep.lab.dovecot_config import installed_version

REPO = Path(__file__).resolve().parents[1]


def test_bench_smoke(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench.py"), "--smoke", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    figures = json.loads(output.read_text())
    expected = {"native LDAP search+bind", "native LDAP auth_bind_userdn"}
    expected |= {"twostep Lua passdb", "twostep PAM passdb"}
    if not installed_version().is_24:  # 2.4 has no checkpassword passdb
        expected |= {"shell checkpassword", "empty Python checkpassword", "twostep checkpassword"}
    assert set(figures["mail"]) == expected
    assert all(
        row["c1"]["rate"] > 0 and row["imap"]["rate"] > 0 for row in figures["mail"].values()
    )
    assert figures["daemon"]["directory operations per login"]["search"] > 0
    assert "| goal | measured | value | met |" in result.stdout
    # as deployed: audit on, and every accepted login's event reached the syslog socket
    audit = figures["mail"]["twostep Lua passdb"]["audit"]
    assert audit["accepted"] > 0 and (audit["events"] == -1 or audit["events"] >= audit["accepted"])
    assert figures["tuned"]["c4"]["rate"] > 0
    assert figures["revocation"]["refused after s"] < 1
    assert "headline, as deployed" in result.stdout
    assert set(figures["mail"]["twostep Lua passdb"]["cpu ms per login"]) >= {"twostepd", "slapd"}
    # the scale part: a large directory against a small one, built by slapadd
    scale = figures["scale"]
    assert scale["sizes"] == {"small": 300, "large": 1500}
    assert all(scale[s]["logins"]["c1"]["rate"] > 0 for s in ("small", "large"))
    large = scale["large"]
    assert large["memory"]["users"] == 1501 and large["memory"]["rss_kb after"] > 0
    assert large["reseal"]["accounts"] == 301 and large["reseal"]["progress updates"] >= 1
    assert large["import"]["accounts"] == 50 and large["import"]["counts"]
    assert large["status"]["command p50 ms"] > 0 and large["ldapmodify/s"] > 0
    assert "accounts: Lua p50 <= 1.1 x" in result.stdout

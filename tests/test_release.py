"""`make test`'s two halves: the closing lines that count both releases, and the chroot
of the other release failing in one sentence when it cannot be built."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "release"))

import summary  # noqa: E402

TRIXIE = "Debian GNU/Linux 13 (trixie)"
BOOKWORM = "Debian GNU/Linux 12 (bookworm)"


def _junit(path: Path, tests: int, failures: int, release: str = TRIXIE) -> Path:
    path.write_text(
        f'<testsuites><testsuite name="pytest" tests="{tests}" failures="{failures}" '
        f'errors="0" skipped="0"><properties><property name="release" '
        f'value="{release}"/></properties></testsuite></testsuites>'
    )
    return path


@pytest.mark.parametrize(
    ("native", "other", "statuses", "ok", "closing"),
    [
        ((10, 0), (12, 0), ("0", "0"), True, "total: 22 passed, 0 failed"),
        ((10, 1), (12, 0), ("1", "0"), False, "total: 21 passed, 1 failed"),
        ((10, 0), None, ("0", "1"), False, "total: 10 passed, 1 failed"),  # chroot not built
        ((10, 0), (0, 0), ("0", "5"), False, "total: 10 passed, 1 failed"),  # nothing ran
        ((10, 0), (12, 0), ("0", "2"), False, "total: 22 passed, 1 failed"),  # lint failed
        ((10, 0), (12, 2), ("0", "0"), False, "total: 20 passed, 2 failed"),  # status lied
    ],
)
def test_the_closing_lines_count_both_releases(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    native: tuple[int, int],
    other: tuple[int, int] | None,
    statuses: tuple[str, str],
    ok: bool,
    closing: str,
) -> None:
    here = _junit(tmp_path / "native.xml", *native, release=BOOKWORM)
    there = tmp_path / "other.xml"
    if other is not None:
        _junit(there, *other)
    code = summary.main(["summary.py", *statuses], (("this machine", here), ("chroot", there)))
    out = capsys.readouterr().out.splitlines()
    assert (code == 0) == ok
    assert out[-1] == closing
    if other is None:
        assert "chroot: its tests did not run" in out[-2]
    else:
        assert out[-2].startswith(f"{TRIXIE} (chroot): ")


def test_two_runs_on_the_same_release_do_not_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    here = _junit(tmp_path / "native.xml", 10, 0, release=TRIXIE)
    there = _junit(tmp_path / "other.xml", 10, 0, release=TRIXIE)
    code = summary.main(["summary.py", "0", "0"], (("this machine", here), ("chroot", there)))
    assert code != 0
    assert "not the other release" in capsys.readouterr().out


def _other_release(root: Path, logs: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """tests/release/other-release with its chroot at ``root``, as make test runs it."""
    return subprocess.run(
        ["bash", str(REPO / "tests/release/other-release")],
        env={**os.environ, "TWOSTEP_CHROOT_DIR": str(root), "TWOSTEP_CHROOT_LOG": str(logs), **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_chroot_that_cannot_be_built_fails_in_one_sentence(tmp_path: Path) -> None:
    # nothing listens on the discard port
    result = _other_release(
        tmp_path / "chroot", tmp_path, TWOSTEP_MIRROR="http://127.0.0.1:9/debian"
    )
    assert result.returncode == 1
    assert "FAILED: the chroot could not be built" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "chroot" / ".twostep-base").exists()


def test_a_folder_that_is_not_its_own_is_never_removed(tmp_path: Path) -> None:
    precious = tmp_path / "site"
    precious.mkdir()
    (precious / "keep.txt").write_text("keep me")
    result = _other_release(precious, tmp_path)
    assert result.returncode == 1 and "is not a chroot this script made" in result.stderr
    assert (precious / "keep.txt").read_text() == "keep me"


def test_a_second_run_on_the_same_chroot_is_refused(tmp_path: Path) -> None:
    import fcntl

    root = tmp_path / "chroot"
    with open(f"{root}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = _other_release(root, tmp_path)
    assert result.returncode == 1 and "another run is using" in result.stderr
    assert not root.exists()

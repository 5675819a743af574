"""One writer per run directory: the lock file, its holder, stale locks, nesting, cleanup."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from cxrkit.run import RunLockedError, lock_path, run_lock


def _write_lock(run_dir, pid: int, host: str | None = None, command: str = "cxr train") -> None:
    path = lock_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(), "started": "t0", "command": command}))


@pytest.fixture
def live_pid():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc.pid
    proc.kill()
    proc.wait()


@pytest.fixture
def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: the pid no longer runs
    return proc.pid


def test_lock_lives_beside_the_folder_names_this_process_and_goes_on_release(tmp_path):
    run = tmp_path / "runs" / "x"
    with run_lock(run, "cxr train") as path:
        assert path == tmp_path / "runs" / ".x.cxr-lock"
        info = json.loads(path.read_text())
        assert info["host"] == socket.gethostname() and info["command"] == "cxr train" and info["started"]
        assert info["pid"] == os.getpid()
        assert not run.exists(), "taking the lock must not create the run folder"
    assert not path.exists()
    assert not (tmp_path / "runs").exists(), "a folder made only for the lock is removed again"


def test_a_live_holder_refuses_a_second_writer_naming_lock_and_pid(tmp_path, live_pid):
    run = tmp_path / "x"
    _write_lock(run, live_pid)
    with pytest.raises(RunLockedError) as err:
        with run_lock(run, "cxr export"):
            pytest.fail("the body must not run while another process holds the lock")
    msg = str(err.value)
    assert f"pid {live_pid}" in msg and str(lock_path(run)) in msg and "cxr train" in msg and "\n" not in msg
    assert lock_path(run).exists(), "the holder's lock is left alone"


def test_a_stale_lock_of_a_dead_process_is_taken_over_and_explained(tmp_path, dead_pid):
    run = tmp_path / "x"
    _write_lock(run, dead_pid)
    notes = []
    with run_lock(run, "cxr train", on_note=notes.append) as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert len(notes) == 1 and "stale" in notes[0] and f"pid {dead_pid}" in notes[0]
    assert not lock_path(run).exists()


def test_a_lock_from_another_host_is_never_taken_over(tmp_path, dead_pid):
    run = tmp_path / "x"
    _write_lock(run, dead_pid, host="some-other-node")
    with pytest.raises(RunLockedError, match="some-other-node.*remove the lock file"):
        with run_lock(run, "cxr train"):
            pass


def test_an_unreadable_lock_is_named_with_the_fix(tmp_path):
    run = tmp_path / "x"
    lock_path(run).write_text("{broken")
    os.utime(lock_path(run), (1, 1))  # old: not a creator between open and write
    with pytest.raises(RunLockedError, match=r"x\.cxr-lock: unreadable lock .* remove the lock file"):
        with run_lock(run, "cxr train"):
            pass


def test_the_same_process_may_nest_holds_and_the_outer_one_releases(tmp_path):
    run = tmp_path / "x"
    with run_lock(run, "cxr export") as outer:
        with run_lock(run, "cxr export --int8") as inner:
            assert inner == outer
        assert outer.exists(), "the inner release must not drop the outer hold"
    assert not outer.exists()


def test_a_lock_is_released_when_the_body_fails(tmp_path):
    run = tmp_path / "x"
    with pytest.raises(ZeroDivisionError):
        with run_lock(run, "cxr train"):
            1 / 0
    assert not lock_path(run).exists()


def test_many_processes_racing_for_one_lock_give_exactly_one_winner(tmp_path):
    """O_EXCL: of eight processes started together, one holds the lock, seven are refused."""
    run = tmp_path / "x"
    code = (
        "import sys, time\n"
        "from cxrkit.run import RunLockedError, run_lock\n"
        "time.sleep(max(0.0, float(sys.argv[2]) - time.time()))\n"
        "try:\n"
        "    with run_lock(sys.argv[1], 'race'):\n"
        "        time.sleep(3.0)\n"
        "except RunLockedError:\n"
        "    sys.exit(2)\n"
    )
    start = str(time.time() + 4.0)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(run), start]) for _ in range(8)]
    codes = sorted(p.wait(timeout=60) for p in procs)
    assert codes == [0] + [2] * 7
    assert not lock_path(run).exists()

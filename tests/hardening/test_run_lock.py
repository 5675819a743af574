"""Issue 29 class 2: one writer per run directory, for every command that writes one; issue 37 item 11:
a lock whose pid is no longer cxrkit is called stale, a run being trained is called so."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time

import pytest

from cxrkit.cli.main import main
from cxrkit.run import lock_path

pytestmark = pytest.mark.timeout(600)


def test_two_trainings_into_one_out_at_once_one_runs_the_other_exits_2_naming_the_lock(
    blob_dataset, tmp_path, tiny_train_argv, multiprocess_env
):
    out, env = tmp_path / "run", multiprocess_env
    procs = [
        subprocess.Popen(
            tiny_train_argv(blob_dataset, out, tmp_path / f"cache{i}", "--epochs", "6"),  # long enough to overlap
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(2)
    ]
    results = [(p, *p.communicate(timeout=500)) for p in procs]
    codes = sorted(p.returncode for p, _, _ in results)
    assert codes == [0, 2], [(p.returncode, err[-800:]) for p, _, err in results]
    (winner, _, _), (loser, _, loser_err) = sorted(results, key=lambda r: r[0].returncode)
    flat = " ".join(loser_err.split())  # rich wraps nothing, but be safe about spaces
    by_lock = f"pid {winner.pid}" in flat and ".run.cxr-lock" in flat
    # on a loaded host the second process can start only after the first has finished: then the
    # finished run refuses it instead of the lock (both exit 2 and overwrite nothing)
    by_finished_run = "already holds a run" in flat and "--resume" in flat
    assert (by_lock or by_finished_run) and "Traceback" not in loser_err, loser_err[-800:]
    assert (out / "model.safetensors").is_file() and (out / "model_card.json").is_file()
    assert len(list((out / "logs").iterdir())) == 1, "one run's logs, not two"
    assert not lock_path(out).exists(), "the winner releases its lock"


def _holding(run_dir, pid: int) -> None:
    path = lock_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = {"pid": pid, "host": socket.gethostname(), "started": "earlier", "command": "cxr train"}
    path.write_text(json.dumps(info))


@pytest.fixture
def foreign_lock():
    """``foreign_lock(dir)``: a lock on ``dir`` held by another live process (as a running cxr: its
    command line names ``cxr``, which is how a lock's live pid is told from a reused one)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", "cxr", "train"])

    def hold(run_dir) -> int:
        _holding(run_dir, proc.pid)
        return proc.pid

    yield hold
    proc.kill()
    proc.wait()


def _refused(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "Traceback" not in err, err
    return " ".join(err.split())


@pytest.mark.parametrize(
    "command", ["export", "evaluate_out", "evaluate", "ensemble", "lungs_train", "train", "resume"]
)
def test_every_run_writer_is_refused_while_another_process_holds_the_lock(
    command, tiny_run, blob_dataset, tmp_path, foreign_lock, capsys
):
    run = shutil.copytree(tiny_run.run_dir, tmp_path / "run")
    target, argv = {
        "export": (run, ["export", str(run), "--onnx"]),
        "evaluate_out": (tmp_path / "ev", ["evaluate", str(run), "--out", str(tmp_path / "ev"), "--resamples", "5"]),
        "evaluate": (run / "evaluation", ["evaluate", str(run), "--resamples", "5"]),
        "ensemble": (tmp_path / "ens", ["ensemble", "create", str(run), str(run), "--out", str(tmp_path / "ens")]),
        "lungs_train": (
            tmp_path / "lungs",
            ["lungs", "train", "--data", str(tmp_path), "--out", str(tmp_path / "lungs")],
        ),
        "train": (tmp_path / "new", ["train", "--data", str(blob_dataset), "--out", str(tmp_path / "new")]),
        "resume": (run, ["train", "--resume", str(run), "--epochs", "5"]),  # plain: refused as finished
    }[command]
    pid = foreign_lock(target)
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    err = _refused(argv, capsys)
    assert f"pid {pid}" in err and lock_path(target).name in err and "cxr train" in err
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before, "nothing in the run was touched"
    assert lock_path(target).exists(), "the holder's lock is left alone"
    for made in ("ev", "ens", "lungs", "new"):
        assert not (tmp_path / made).exists(), f"a refused start left {made}/ behind"


def test_a_stale_lock_left_by_a_killed_training_is_explained_and_does_not_block(
    blob_dataset, tmp_path, tiny_train_argv, multiprocess_env
):
    out, env = tmp_path / "run", multiprocess_env
    first = subprocess.Popen(tiny_train_argv(blob_dataset, out, tmp_path / "c"), env=env, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not lock_path(out).exists() and time.time() < deadline:
        time.sleep(0.05)
    first.kill()  # SIGKILL: no cleanup runs, the lock stays behind
    first.wait()
    assert lock_path(out).exists()
    res = subprocess.run(
        tiny_train_argv(blob_dataset, out, tmp_path / "c"), capture_output=True, text=True, env=env, timeout=500
    )
    flat = " ".join(res.stdout.split())
    if res.returncode == 2:  # the killed run had already written part of a run: said so, not a lock
        assert "already holds a run" in res.stderr and "--resume" in res.stderr, res.stderr[-800:]
    else:
        assert res.returncode == 0, res.stderr[-800:]
    assert f"stale lock {lock_path(out)}" in flat and f"pid {first.pid}" in flat, res.stdout[-800:]
    assert not lock_path(out).exists()


@pytest.fixture
def other_process():
    """A live process that is not cxrkit (what a reused pid runs)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    yield proc.pid
    proc.kill()
    proc.wait()


@pytest.mark.parametrize("holder", ["reused", "pid1"])
def test_a_lock_naming_a_live_process_that_is_not_cxrkit_is_called_stale_naming_the_file(
    tiny_run, tmp_path, capsys, other_process, holder
):
    pid = other_process if holder == "reused" else 1
    try:
        init = open("/proc/1/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        init = None
    if holder == "pid1" and (init is None or "cxr" in init):
        pytest.skip("pid 1's command line cannot be read here, or names cxr")
    run = shutil.copytree(tiny_run.run_dir, tmp_path / "run")
    _holding(run, pid)
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    err = _refused(["train", "--resume", str(run), "--epochs", "5"], capsys)
    assert "looks stale" in err and f"remove {lock_path(run)}" in err and f"pid {pid}" in err, err
    assert "wait for it" not in err
    assert lock_path(run).exists(), "a live process is never provably not the holder: the user removes it"
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_a_run_being_trained_is_said_to_be_training_not_to_be_no_run(
    tiny_run, tmp_path, foreign_lock, capsys, make_image, command
):
    run = shutil.copytree(tiny_run.run_dir, tmp_path / "run")
    (run / "model_card.json").unlink()
    (run / "model.safetensors").unlink()
    pid = foreign_lock(run)
    argv = ["evaluate", str(run), "--resamples", "5"] if command == "evaluate" else ["predict", str(run)]
    err = _refused(argv + ([str(make_image("x.png"))] if command == "predict" else []), capsys)
    assert f"{run}: still training" in err and f"pid {pid}" in err and str(lock_path(run)) in err, err
    assert "not a run directory" not in err

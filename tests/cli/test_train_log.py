"""`cxr train` with stderr in a file, as under nohup or CI: a line per epoch, and SIGTERM stops it
with a checkpoint and the command that resumes it."""

from __future__ import annotations

import re
import signal
import subprocess
import time

EPOCH_LINE = re.compile(r"^\[cxr \S+\] epoch (\d+)/(\d+): train loss [\d.]+, val loss [\d.]+, val acc [\d.]+, ETA \S+")


def _epoch_lines(text: str) -> list[int]:
    return [int(m.group(1)) for m in map(EPOCH_LINE.match, text.splitlines()) if m]


def _wait_for(path, pattern: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    end = time.monotonic() + timeout
    while pattern not in path.read_text():
        assert proc.poll() is None, f"exited {proc.returncode} before {pattern!r}:\n{path.read_text()[-2000:]}"
        assert time.monotonic() < end, f"no {pattern!r} within {timeout} s"
        time.sleep(0.05)


def test_sigterm_stops_with_a_checkpoint_and_the_resume_command(
    blob_writer, tmp_path, tiny_train_argv, multiprocess_env
):
    # ~30 batches of 4 at 128 px per epoch: an epoch lasts long enough to be signalled inside the next
    data, out = blob_writer(tmp_path / "data", per_class=48), tmp_path / "run"
    argv = tiny_train_argv(data, out, tmp_path / "cache", "--epochs", "4", "--input-size", "128", "--batch-size", "4")
    log = tmp_path / "stderr.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True, env=multiprocess_env)
        try:
            _wait_for(log, "epoch 1/4: train loss", proc)
            proc.send_signal(signal.SIGTERM)
            stdout, _ = proc.communicate(timeout=60)
        finally:
            proc.kill()
    text = log.read_text()
    assert proc.returncode == 143, text[-2000:]
    epochs = _epoch_lines(text)
    assert epochs == list(range(1, len(epochs) + 1)) and 1 <= len(epochs) < 4, text  # one per epoch, then the stop
    assert "stopped: training stopped by SIGTERM" in text
    assert f"continue with: cxr train --resume {out}" in text
    assert (out / "checkpoints" / "last.ckpt").is_file() and not (out / "model_card.json").exists()

    with open(log, "w") as err:
        done = subprocess.run(
            [*argv[:3], "train", "--resume", str(out)], stderr=err, text=True, env=multiprocess_env, timeout=300
        )
    text = log.read_text()
    assert done.returncode == 0, text[-2000:]
    assert _epoch_lines(text) == list(range(len(epochs) + 1, 5)), text  # the stopped epoch is finished, then the rest
    assert (out / "model_card.json").is_file()

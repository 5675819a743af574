"""Issue 37 item 8: a file name with invalid UTF-8 bytes (a copy from an old Windows share).

Python reads such a name with lone surrogates; encoding it as strict UTF-8 made `cxr train`,
`cxr data inspect` and `cxr evaluate --data` fail on the scan cache key before reading anything,
and `cxr predict --out X.csv` predict every file and then write nothing ("this is a bug"). Now
the film is read like any other, and the files cxrkit writes name it by its own bytes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cxrkit._io import atomic_write_text, read_text, text_bytes
from cxrkit.data.cache import files_fingerprint
from cxrkit.data.multi import load_data
from cxrkit.data.splits import make_split, read_split, split_to_csv

BAD = b"bad\xff name.png"  # Latin-1 "ÿ": invalid as UTF-8


def _with_bad_name(folder: Path, source: Path) -> Path:
    """Copy ``source`` into ``folder`` under the invalid UTF-8 name; return the path as Python sees it."""
    raw = os.fsencode(folder) + b"/" + BAD
    shutil.copyfile(source, raw)
    return Path(os.fsdecode(raw))


def test_keys_fingerprints_and_split_files_take_any_name(tmp_path, blob_writer):
    data = blob_writer(tmp_path / "d", per_class=4)
    bad = _with_bad_name(data / "covid", data / "covid" / "covid_000.png")
    assert "\udcff" in str(bad)
    plain = data / "normal" / "normal_000.png"
    key = files_fingerprint([plain], {"v": 1})
    # ordinary names keep the key they had (caches stay valid)
    import hashlib
    import json

    h = hashlib.sha256(json.dumps({"v": 1}, sort_keys=True).encode())
    st = plain.stat()
    h.update(f"{plain}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    assert key == h.hexdigest()[:24]
    assert len(files_fingerprint([plain, bad], {"v": 1})) == 24

    ds = load_data(data, "covid,viral_pneumonia,normal")
    assert bad in {r.path for r in ds.records}
    ds.fingerprint()
    split = make_split(ds, None, seed=0)
    atomic_write_text(tmp_path / "split.csv", split_to_csv(ds, split))
    assert BAD in (tmp_path / "split.csv").read_bytes()  # the name's own bytes
    assert read_split(tmp_path / "split.csv", ds).assignment == split.assignment
    assert read_text(tmp_path / "split.csv") == split_to_csv(ds, split)
    assert text_bytes("plain") == b"plain"


def _cxr(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    # a UTF-8 locale makes Python's stdout strict, as on most desktops
    env = {**os.environ, "CXR_NO_TCMALLOC": "1", "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8:strict"}
    res = subprocess.run(
        [sys.executable, "-m", "cxrkit", *map(str, args)], capture_output=True, timeout=timeout, env=env
    )
    out = (res.stdout + res.stderr).decode("utf-8", "backslashreplace")
    assert "Traceback" not in out and "this is a bug" not in out, out
    assert res.returncode == 0, out
    return res


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_every_command_reads_and_names_a_non_utf8_file(tmp_path, blob_writer, tiny_train_argv):
    data = blob_writer(tmp_path / "d", per_class=8)
    _with_bad_name(data / "covid", data / "covid" / "covid_000.png")
    cache, run = tmp_path / "cache", tmp_path / "run"

    _cxr("data", "inspect", data, "--workers", "1", "--out", tmp_path / "inspect")
    assert BAD in (tmp_path / "inspect" / "split.csv").read_bytes()

    argv = tiny_train_argv(data, run, cache, "--epochs", "1")
    res = subprocess.run(argv, capture_output=True, timeout=300, env={**os.environ, "PYTHONIOENCODING": "utf-8:strict"})
    assert res.returncode == 0, res.stderr.decode("utf-8", "backslashreplace")[-2000:]
    assert BAD in (run / "split.csv").read_bytes()  # trained on (or split) like any film

    _cxr("evaluate", run, "--data", data, "--split", "all", "--workers", "1", "--out", tmp_path / "ev")
    for out, extra in (("p.csv", ()), ("p.txt", ()), ("r.csv", ("--resumable",)), ("p.json", ())):
        res = _cxr("predict", run, data / "covid", "--out", tmp_path / out, *extra)
        assert b"9 predicted, 0 failed" in res.stdout
        written = (tmp_path / out).read_bytes()
        assert BAD in written or b"bad\\udcff name.png" in written  # JSON escapes it: still that name
    res = _cxr("predict", run, data / "covid")  # the table on a strict UTF-8 stdout
    assert b"bad\xff" in res.stdout

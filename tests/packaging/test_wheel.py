"""The built wheel works where a user installs it: a fresh virtual environment, outside the checkout.

How the fresh environment gets its dependencies, and why: installing ``requirements.txt``
into it would copy ~7 GB (torch and its CUDA libraries) per test run, and a plain ``pip
install cxrkit.whl`` would resolve torch from an index and could pull another build. So the
fresh venv is made without packages, a ``.pth`` file puts this environment's site-packages
(the pinned, tested torch, timm, lightning, ...) *after* its own on ``sys.path``, and the
wheel goes in with ``--no-deps``. Lines of a ``.pth`` file are appended as plain paths, so
the ``.pth`` files inside this environment (its editable cxrkit pointing at ``src/``) are not
read: ``import cxrkit`` can only find the wheel's copy, which the test checks. What this
proves: the wheel holds every module and the ``--config`` presets (package data found with
importlib.resources), its ``cxr`` entry point works, and a one-epoch training runs from a
folder outside the checkout. What it does not: that pip would resolve the loose dependency
names of ``pyproject.toml`` to working versions (requirements.txt pins those).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "NOTICE", "src")

pytestmark = pytest.mark.slow


def _run(cmd, cwd, env=None, timeout=300) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))}\n{(done.stdout + done.stderr)[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory, blob_writer):
    tmp = tmp_path_factory.mktemp("wheel")
    # Build from a copy, so setuptools' build/ and egg-info never land in the checkout.
    src = tmp / "source"
    src.mkdir()
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=skip)
        else:
            shutil.copy(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), str(src)], cwd=tmp)
    (wheel,) = (tmp / "dist").glob("cxrkit-*.whl")

    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp)
    python = venv / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(_run([str(python), "-c", purelib], tmp).stdout.strip())
    (site / "pinned_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)], cwd=tmp)

    outside = tmp / "elsewhere"  # a folder with no checkout above it
    outside.mkdir()
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp),
        "CXR_CACHE": str(tmp / "cache"),
        "OMP_NUM_THREADS": "1",
        "CXR_NO_TCMALLOC": "1",
    }
    return {"venv": venv, "wheel": wheel, "cwd": outside, "env": env, "data": blob_writer(tmp / "data", per_class=12)}


def test_wheel_ships_the_presets_and_the_license(installed):
    import zipfile

    names = zipfile.ZipFile(installed["wheel"]).namelist()
    assert {"cxrkit/configs/fast.yaml", "cxrkit/configs/default.yaml"} <= set(names)
    assert any(n.endswith("licenses/LICENSE") for n in names), "LICENSE missing from the wheel's metadata"


def test_the_installed_copy_is_the_one_imported(installed):
    done = _run(
        [str(installed["venv"] / "bin" / "python"), "-c", "import cxrkit; print(cxrkit.__file__)"],
        installed["cwd"],
        installed["env"],
    )
    assert done.stdout.strip().startswith(str(installed["venv"])), done.stdout


def test_cxr_help_and_the_fast_preset_from_outside_the_checkout(installed):
    cxr = str(installed["venv"] / "bin" / "cxr")
    assert "ensemble" in _run([cxr, "--help"], installed["cwd"], installed["env"]).stdout
    assert "--config" in _run([cxr, "train", "--config", "fast", "--help"], installed["cwd"], installed["env"]).stdout


def test_one_epoch_training_with_the_fast_preset(installed):
    run = installed["cwd"] / "runs" / "quick"
    cmd = [str(installed["venv"] / "bin" / "cxr"), "train", "--config", "fast", "--data", str(installed["data"])]
    cmd += ["--out", str(run), "--epochs", "1", "--input-size", "32", "--batch-size", "8", "--workers", "1"]
    _run(cmd, installed["cwd"], installed["env"], timeout=600)
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"] == "resdense_tiny" and config["epochs"] == 1  # the preset's model, the flag's epochs
    assert (run / "model.safetensors").is_file() and (run / "model_card.json").is_file()

"""A non-editable install works from outside the checkout and writes nothing into the
installed packages: `fashion-mrcnn --help` and `dgx-ssh --help` run as console scripts.

The packages are copied to a temporary source tree first, so building the wheel leaves
no build/ or *.egg-info in the checkout; dependencies come from this environment.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("mrcnn", "fashion", "setup.py", "requirements.txt", "README.md")


def _files(root):
    return {p.relative_to(root): p.stat().st_mtime_ns
            for p in Path(root).rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    base = tmp_path_factory.mktemp("install")
    src, target, work = base / "src", base / "site", base / "work"
    src.mkdir()
    work.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(REPO / name, src / name)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "--no-build-isolation", "--no-warn-script-location", "--target", str(target),
         str(src)], capture_output=True, text=True, timeout=300, cwd=str(work))
    if proc.returncode != 0 and "No module named pip" in proc.stderr:
        pytest.skip("pip is not available to this Python")
    assert proc.returncode == 0, proc.stderr
    env = dict(os.environ, PYTHONPATH=str(target), PYTHONDONTWRITEBYTECODE="1")
    return {"target": target, "work": work, "env": env, "before": _files(target)}


def _run(installed, script, *args):
    path = installed["target"] / "bin" / script
    return subprocess.run([str(path), *args], capture_output=True, text=True, timeout=120,
                          cwd=str(installed["work"]), env=installed["env"])


def test_packages_come_from_the_install_with_their_label_files(installed):
    proc = subprocess.run(
        [sys.executable, "-c", "import fashion, mrcnn; from fashion.data.labels import "
         "label_file; print(fashion.__file__); print(mrcnn.__file__); "
         "print(label_file('imat2019'))"],
        capture_output=True, text=True, timeout=60, cwd=str(installed["work"]),
        env=installed["env"])
    assert proc.returncode == 0, proc.stderr
    for line in proc.stdout.split():
        assert line.startswith(str(installed["target"])), line
        assert os.path.isfile(line), line


def test_console_scripts_run_outside_the_checkout(installed):
    cli = _run(installed, "fashion-mrcnn", "--help")
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.startswith("usage: fashion-mrcnn "), cli.stdout[:80]
    for command in ("train", "evaluate", "detect", "submit", "score", "check", "demo"):
        assert command in cli.stdout
    demo = _run(installed, "fashion-mrcnn", "demo", "--help")
    assert demo.returncode == 0, demo.stderr
    assert "data/demo" in demo.stdout and str(REPO) not in demo.stdout
    ssh = _run(installed, "dgx-ssh", "--help")
    assert ssh.returncode == 0, ssh.stderr
    assert "usage" in ssh.stdout.lower()
    assert _files(installed["target"]) == installed["before"], "files written into the install"
    assert not list(installed["work"].iterdir()), "--help wrote files"

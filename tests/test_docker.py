"""docker/Dockerfile and .dockerignore: NGC base, install steps, no weights or data copied.

Docker itself is not available here, so the files are parsed: Dockerfile instructions
(with line continuations) and .dockerignore patterns (Docker's rules: Go-style globs,
`**`, `!` exceptions, last match wins, a matched directory excludes its contents).
"""
import re
import shlex
from pathlib import Path

import pytest

from fashion.remote.ignore import glob_regex

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "docker" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


def instructions(path=DOCKERFILE):
    """[(INSTRUCTION, arguments)] with comments dropped and continuations joined."""
    out, current = [], ""
    for line in path.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        word, _, rest = current.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        current = ""
    return out


def rule(pattern, negate=False):
    """(negate, regex) of one .dockerignore pattern: anchored at the context's root."""
    return negate, re.compile(glob_regex(pattern) + r"\Z")


def ignore_rules(path=DOCKERIGNORE):
    rules = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        pattern = pattern.strip("/")
        rules.append(rule(pattern, negate))
    return rules


def excluded(relpath, rules):
    """True if Docker leaves `relpath` (posix, relative to the context) out of the build."""
    parts = relpath.split("/")
    candidates = ["/".join(parts[:k]) for k in range(1, len(parts) + 1)]
    result = False
    for negate, regex in rules:
        if any(regex.match(c) for c in candidates):
            result = not negate
    return result


@pytest.fixture(scope="module")
def steps():
    return instructions()


def test_base_image_is_ngc_tensorflow_2024_or_2025(steps):
    base = next(v for k, v in steps if k == "FROM")
    if base.startswith("${"):
        base = re.search(r"BASE_IMAGE=(\S+)", " ".join(v for k, v in steps if k == "ARG"))[1]
    assert re.fullmatch(r"nvcr\.io/nvidia/tensorflow:2[45]\.\d\d-tf2-py3", base), base


def test_installs_keras3_requirements_without_tensorflow_then_the_repo(steps):
    runs = [v for k, v in steps if k == "RUN"]
    deps = next(r for r in runs if "requirements" in r)
    assert "keras>=3" in deps
    # the tensorflow line is filtered out of requirements before pip sees them
    filt = re.search(r"grep -viE '([^']+)' requirements\.txt", deps)
    assert filt, deps
    pattern = re.compile(filt[1].replace("[[:space:]]", r"\s"), re.I)
    lines = (REPO / "requirements.txt").read_text().splitlines()
    kept = [ln for ln in lines if not pattern.search(ln)]
    assert not any(ln.strip().lower().startswith("tensorflow") for ln in kept)
    assert any(ln.startswith("keras") for ln in kept) and any("numpy" in ln for ln in kept)
    install = [r for r in runs if re.search(r"pip install .*-e \.", r)]
    assert install, "no `pip install -e .` step"
    assert runs.index(install[0]) > runs.index(deps)


def test_workdir_and_default_command(steps):
    assert ("WORKDIR", "/workspace/fashion-mrcnn") in steps
    cmd = [v for k, v in steps if k == "CMD"][-1]
    assert cmd.startswith("[")
    assert eval(cmd) == ["python", "fashion/fashion.py", "--help"]  # JSON exec form


def test_copy_and_add_never_name_weights_or_data(steps):
    copies = [(k, v) for k, v in steps if k in ("COPY", "ADD")]
    assert copies
    for kind, value in copies:
        assert kind == "COPY", "ADD can fetch URLs / unpack archives; use COPY"
        sources = [a for a in shlex.split(value) if not a.startswith("--")][:-1]
        for src in sources:
            assert not re.search(r"\.(h5|keras|hdf5|part)$|(^|/)(weights|data|logs)(/|$)",
                                 src), src


@pytest.mark.parametrize("path", [
    "weights/mask_rcnn_coco.h5", "weights/mask_rcnn_coco.h5.part",
    "weights/efficientnetb0_notop.h5", "mask_rcnn_coco.h5", "logs/run1/ckpt_0001.h5",
    "logs/events.out.tfevents", "data/imat/train/0001.jpg", "data/train.csv",
    ".git/HEAD", "samples/shapes/model.weights.h5", "fashion/__pycache__/x.pyc",
    "cache/train.tfrecord-00001", "runs/x/model.keras"])
def test_dockerignore_excludes(path):
    assert excluded(path, ignore_rules()), path


@pytest.mark.parametrize("path", [
    "setup.py", "requirements.txt", "README.md", "mrcnn/__init__.py",
    "mrcnn/data/__init__.py", "mrcnn/visualize.py", "fashion/data/labels/imat2020_label_descriptions.json",
    "weights/download.py", "weights/README.md", "weights/__init__.py",
    "docker/Dockerfile", "tests/data/fashionpedia_api_fake_results.json"])
def test_dockerignore_keeps_code(path):
    assert not excluded(path, ignore_rules()), path


def test_no_weight_file_in_the_tree_reaches_the_context():
    rules = ignore_rules()
    leaks = [str(p.relative_to(REPO)) for p in REPO.rglob("*")
             if p.is_file() and p.suffix in (".h5", ".keras", ".part", ".hdf5")
             and not excluded(p.relative_to(REPO).as_posix(), rules)]
    assert not leaks


def test_matcher_follows_docker_rules():
    rules = [rule("weights/*"), rule("weights/keep.py", negate=True)]
    assert excluded("weights/a.h5", rules) and not excluded("weights/keep.py", rules)
    assert excluded("data/x/y.jpg", [rule("data")])
    assert not excluded("mrcnn/data/x.py", [rule("data")])

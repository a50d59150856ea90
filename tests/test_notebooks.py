"""The sample notebooks run top to bottom on the demo data and draw their figures.

Each notebook is executed with nbclient in a temporary copy (outputs cleared). One small
model is trained once for the module (with the notebooks' own helper) and handed to the
model notebooks through MRCNN_NOTEBOOK_WEIGHTS, so only the data and the inference run
inside the kernels.
"""
import os
import shutil
import time

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# notebook -> the fewest image/png outputs it must produce
NOTEBOOKS = {
    "samples/fashion/inspect_fashion_data.ipynb": 9,
    "samples/fashion/inspect_fashion_model.ipynb": 8,
    "samples/demo.ipynb": 2,
}
CELL_TIMEOUT = 240


@pytest.fixture(scope="module")
def notebook_env(tmp_path_factory):
    """Demo data and one checkpoint trained with the notebooks' config and helper."""
    base = tmp_path_factory.mktemp("notebooks")
    env = {"MRCNN_ROOT": ROOT, "MRCNN_NOTEBOOK_DATA": str(base / "data"),
           "MRCNN_NOTEBOOK_LOGS": str(base / "logs"), "MRCNN_NOTEBOOK_STEPS": "20",
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        from samples.fashion import _notebook_setup as nbs
        train, val = nbs.demo_datasets()
        env["MRCNN_NOTEBOOK_WEIGHTS"] = nbs.trained_weights(train, val, verbose=0)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return env


def execute(path, workdir, env, monkeypatch):
    """Runs a cleared copy of the notebook in workdir; returns the executed notebook."""
    copy = os.path.join(workdir, os.path.basename(path))
    shutil.copyfile(os.path.join(ROOT, path), copy)
    nb = nbformat.read(copy, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    for key, value in env.items():
        monkeypatch.setenv(key, value)  # the kernel inherits this environment
    NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                   resources={"metadata": {"path": str(workdir)}}).execute()
    return nb


@pytest.mark.parametrize("path", sorted(NOTEBOOKS))
def test_notebook_runs_and_draws(path, notebook_env, tmp_path, monkeypatch):
    t0 = time.time()
    nb = execute(path, tmp_path, notebook_env, monkeypatch)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors, errors[0].get("evalue")
    tracebacks = [o.text for o in outputs if o.output_type == "stream"
                  and o.name == "stderr" and "Traceback" in o.text]
    assert not tracebacks, tracebacks[0]
    pngs = sum("image/png" in o.get("data", {}) for o in outputs)
    assert pngs >= NOTEBOOKS[path], f"{path} drew {pngs} figures, expected {NOTEBOOKS[path]}"
    assert all(c.execution_count for c in nb.cells if c.cell_type == "code")
    print(f"{path}: {pngs} figures in {time.time() - t0:.0f} s")


def test_committed_notebooks_are_light_and_executed():
    """The .ipynb files in the repo keep their outputs (readable on GitHub) and stay small."""
    for path, min_pngs in NOTEBOOKS.items():
        full = os.path.join(ROOT, path)
        assert os.path.getsize(full) < 1.5e6, f"{path} is over 1.5 MB"
        nb = nbformat.read(full, as_version=4)
        nbformat.validate(nb)
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
        assert not [o for o in outputs if o.output_type == "error"], path
        assert sum("image/png" in o.get("data", {}) for o in outputs) >= min_pngs, path

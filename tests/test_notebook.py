"""`notebooks/fedmm_walkthrough.ipynb` runs top to bottom in this venv's Python and leaves no TFF worker.

The kernel is started from a kernelspec written to a temporary JUPYTER_PATH whose argv is this
interpreter (`sys.executable`), so neither a user-level `python3` kernelspec nor PATH decides which
Python runs the notebook.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO_ROOT

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = REPO_ROOT / "notebooks" / "fedmm_walkthrough.ipynb"
KERNEL = "tff-fedmm-test"
# Appended to the notebook under test only: what the kernel ran on, the final table's methods, and the
# worker_binary processes the kernel started (so the test can check they are gone after shutdown).
PROBE = """
import json, os, sys
def _children(pid):
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid and b"worker_binary" in cmd:
            found.append(int(entry))
    return found
print("PROBE" + json.dumps({"executable": sys.executable,
                            "methods": sorted(comparison.reset_index()["method"].unique()),
                            "workers": _children(os.getpid())}))
"""


def _kernelspec(root: Path) -> Path:
    spec_dir = root / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "tff_fedmm venv (test)", "language": "python",
            "env": {"TF_CPP_MIN_LOG_LEVEL": "2"}}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return root


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    source = "\n".join(c.source for c in code)
    assert "from tff_fedmm import" in source and "install_execution_context" not in source


@pytest.mark.slow
def test_notebook_runs_in_the_venv_and_leaves_no_worker(tmp_path, monkeypatch):
    try:
        import IPython  # noqa: F401  (the kernel imports it too)
    except ImportError as err:
        pytest.fail(f"IPython does not import in this venv, so no kernel can start: {err}. ipython 8.23 needs "
                    "typing-extensions>=4.6 (TypeAliasType) but TFF pins 4.5: pin ipython==8.22.2")
    monkeypatch.setenv("JUPYTER_PATH", str(_kernelspec(tmp_path / "jupyter")))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    workdir = tmp_path / "work"
    workdir.mkdir()
    client = nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=600, allow_errors=False,
                                     resources={"metadata": {"path": str(workdir)}})
    started = time.monotonic()
    try:
        client.execute()  # raises CellExecutionError naming the cell if any cell fails; shuts the kernel down
    except nbclient.exceptions.CellExecutionError as err:
        if "checkpoint of stage" in str(err):
            pytest.fail("compare(out=...) cannot checkpoint inside a Jupyter kernel: tff_fedmm/checkpoints.py calls "
                        "asyncio.run() while the kernel's event loop runs (RuntimeError). Full error:\n"
                        + str(err)[-2000:])
        raise
    elapsed = time.monotonic() - started

    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    probe = next(line for o in nb.cells[-1].outputs if o.output_type == "stream"
                 for line in o.text.splitlines() if line.startswith("PROBE"))
    facts = json.loads(probe[len("PROBE"):])
    assert facts["executable"] == sys.executable
    assert {"fedmm", "local", "fedavg"} <= set(facts["methods"])
    final = nb.cells[-2]  # the notebook's own last cell ran; its comparison table is displayed above
    table = next(o for c in nb.cells if c.cell_type == "code" and "comparison  #" in c.source for o in c.outputs
                 if o.output_type == "execute_result")
    assert all(m in table["data"]["text/plain"] for m in ("fedmm", "local", "fedavg"))
    assert final.outputs, "the run-folder cell printed nothing"
    assert (workdir / "runs" / "walkthrough" / "results.csv").is_file()
    assert facts["workers"], "the notebook ran federated stages, so its kernel started a worker"
    deadline = time.monotonic() + 20
    while any(_alive(p) for p in facts["workers"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in facts["workers"] if _alive(p)], "worker_binary outlived the notebook's kernel"
    print(f"notebook executed in {elapsed:.0f} s")

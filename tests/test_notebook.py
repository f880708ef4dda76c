"""`notebooks/fedmm_walkthrough.ipynb` is committed with the outputs of its current cells, runs top to bottom
in this venv's Python to the same outputs, and leaves no TFF worker.

Execution, the kernelspec (this interpreter, whatever PATH or a user's `python3` kernelspec say) and the
comparison are `tasks/notebook.py`'s, the command that regenerates the notebook.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time

import pytest
from conftest import REPO_ROOT

from tff_fedmm.scale.process_cost import alive

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = REPO_ROOT / "notebooks" / "fedmm_walkthrough.ipynb"
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


def _task():
    spec = importlib.util.spec_from_file_location("notebook_task", REPO_ROOT / "tasks" / "notebook.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_notebook_is_stored_with_the_outputs_of_its_current_cells():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), "run python tasks/notebook.py"
    assert nb.metadata.get("fedmm", {}).get("source_sha256") == _task().source_digest(nb), (
        "a code cell changed since the outputs were made: run python tasks/notebook.py")
    outputs = [o for c in code for o in c.outputs]
    assert outputs and not [o for o in outputs if o.output_type == "error" or o.get("name") == "stderr"]
    source = "\n".join(c.source for c in code)
    assert "from tff_fedmm import" in source and "install_execution_context" not in source
    assert "load_market_model" in source and "encode(" in source  # the exports are used, not just listed


@pytest.mark.slow
def test_notebook_runs_in_the_venv_to_its_committed_outputs_and_leaves_no_worker(tmp_path):
    try:
        import IPython  # noqa: F401  (the kernel imports it too)
    except ImportError as err:
        pytest.fail(f"IPython does not import in this venv, so no kernel can start: {err}. ipython 8.23 needs "
                    "typing-extensions>=4.6 (TypeAliasType) but TFF pins 4.5: pin ipython==8.22.2")
    task = _task()
    stored = nbformat.read(NOTEBOOK, as_version=4)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    workdir = tmp_path / "work"
    workdir.mkdir()
    started = time.monotonic()
    try:
        task.execute(nb, workdir)  # raises CellExecutionError naming the cell if any cell fails; shuts the kernel down
    except nbclient.exceptions.CellExecutionError as err:
        if "checkpoint of stage" in str(err):
            pytest.fail("compare(out=...) cannot checkpoint inside a Jupyter kernel: tff_fedmm/checkpoints.py calls "
                        "asyncio.run() while the kernel's event loop runs (RuntimeError). Full error:\n"
                        + str(err)[-2000:])
        raise
    elapsed = time.monotonic() - started

    probe = next(line for o in nb.cells[-1].outputs if o.output_type == "stream"
                 for line in o.text.splitlines() if line.startswith("PROBE"))
    facts = json.loads(probe[len("PROBE"):])
    assert facts["executable"] == sys.executable
    assert {"fedmm", "local", "fedavg"} <= set(facts["methods"])
    assert (workdir / "runs" / "walkthrough" / "results.csv").is_file()
    assert (workdir / "runs" / "walkthrough" / "markets" / "m0" / "models" / "fedmm" / "deepfm").is_dir()
    nb.cells.pop()
    fresh, committed = task.text_outputs(nb), task.text_outputs(stored)
    stale = [i for i, (a, b) in enumerate(zip(fresh, committed)) if a != b]
    assert not stale, (f"code cells {stale} give other outputs than the committed ones: run python tasks/notebook.py "
                       f"(first difference: {fresh[stale[0]]!r} against {committed[stale[0]]!r})")
    assert facts["workers"], "the notebook ran federated stages, so its kernel started a worker"
    deadline = time.monotonic() + 20
    while any(alive(p) for p in facts["workers"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in facts["workers"] if alive(p)], "worker_binary outlived the notebook's kernel"
    print(f"notebook executed in {elapsed:.0f} s")

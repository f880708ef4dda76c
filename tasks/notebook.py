"""Regenerate or check `notebooks/fedmm_walkthrough.ipynb`, which is committed with its outputs.

    python tasks/notebook.py          # execute it (in a temporary folder) and write it back with its outputs
    python tasks/notebook.py --check  # execute it and compare with the committed outputs; status 1 if they differ

The kernel is this interpreter (a kernelspec in a temporary JUPYTER_PATH whose argv is `sys.executable`), so
neither a user's `python3` kernelspec nor PATH decides which Python runs it. The notebook's metadata records
a digest of its code cells (`fedmm.source_sha256`): a cell edited without regenerating no longer matches its
outputs, and `tests/test_notebook.py` says so. Outputs are compared as text (stdout, tables; a figure counts
as its kind only, its pixels are not compared); stderr (TensorFlow's start-up lines) is not kept.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "fedmm_walkthrough.ipynb"
KERNEL = "tff-fedmm-notebook"


def source_digest(nb) -> str:
    """What the stored outputs were made from: every code cell's source, in order."""
    return hashlib.sha256(json.dumps([c.source for c in nb.cells if c.cell_type == "code"]).encode()).hexdigest()


@contextlib.contextmanager
def kernelspec() -> Iterator[None]:
    """JUPYTER_PATH pointing at a kernelspec of this interpreter, while in the block."""
    with tempfile.TemporaryDirectory() as root:
        spec_dir = Path(root) / "kernels" / KERNEL
        spec_dir.mkdir(parents=True)
        spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "tff_fedmm venv", "language": "python"}
        (spec_dir / "kernel.json").write_text(json.dumps(spec))
        saved = {k: os.environ.get(k) for k in ("JUPYTER_PATH",)}
        os.environ.update(JUPYTER_PATH=root)
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def execute(nb, workdir: Path):
    """Runs `nb` (changed in place, and returned) with `workdir` as its working folder; raises nbclient's
    CellExecutionError, naming the cell, if one fails. Stderr outputs are dropped, timing is not recorded."""
    import nbclient

    with kernelspec():
        nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=900, allow_errors=False, record_timing=False,
                                resources={"metadata": {"path": str(workdir)}}).execute()
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if not (o.output_type == "stream" and o.name == "stderr")]
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    nb.metadata["fedmm"] = {"source_sha256": source_digest(nb)}
    return nb


def text_outputs(nb) -> list[list[str]]:
    """Per code cell, its outputs as comparable text: stream text, and the text/plain of results, with
    any image reduced to its MIME type."""
    cells = []
    for cell in (c for c in nb.cells if c.cell_type == "code"):
        texts = []
        for out in cell.outputs:
            if out.output_type == "stream":
                texts.append(out.text)
            elif out.output_type in ("execute_result", "display_data"):
                images = sorted(k for k in out.data if k.startswith("image/"))
                texts.append(" ".join(images) if images else out.data.get("text/plain", ""))
        cells.append(texts)
    return cells


def main(argv: list[str] | None = None) -> int:
    import nbformat

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed outputs instead of writing")
    args = parser.parse_args(argv)
    stored = nbformat.read(NOTEBOOK, as_version=4)
    with tempfile.TemporaryDirectory() as workdir:
        fresh = execute(nbformat.read(NOTEBOOK, as_version=4), Path(workdir))
    if not args.check:
        nbformat.write(fresh, NOTEBOOK)
        print(f"{NOTEBOOK.relative_to(REPO)}: regenerated")
        return 0
    differ = [i for i, (a, b) in enumerate(zip(text_outputs(stored), text_outputs(fresh))) if a != b]
    if differ or stored.metadata.get("fedmm") != fresh.metadata["fedmm"]:
        print(f"{NOTEBOOK.relative_to(REPO)}: stale (code cells {differ} or its source digest differ); "
              "run python tasks/notebook.py", file=sys.stderr)
        return 1
    print(f"{NOTEBOOK.relative_to(REPO)}: outputs are fresh")
    return 0


if __name__ == "__main__":
    sys.exit(main())

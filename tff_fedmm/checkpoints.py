"""Checkpoints of a run folder: per-round program state of every federated stage, and finished stages.

Round state (server state, every market's client state, the early-stopping bookkeeping) is saved with
`tff.program.FileProgramStateManager` under `OUT/checkpoints/<stage>/`, after every round. A stage that
finished stores its outputs (`.npz` arrays, `.json` metrics) and is skipped on resume. Every stage is a
deterministic function of its inputs, the seed and the round number, so `--resume` reproduces the
uninterrupted run exactly. A run without `--resume` starts from scratch and clears old checkpoints.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import shutil
from pathlib import Path

import numpy as np

from tff_fedmm.errors import UsageError


class RunCheckpoints:
    def __init__(self, out: Path, resume: bool, fingerprint: dict):
        """`fingerprint` (data files and settings) must match the checkpoint's, or resume is refused."""
        self.root = Path(out) / "checkpoints"
        identity = self.root / "fingerprint.json"
        if resume and identity.exists():
            saved = json.loads(identity.read_text())
            changed = sorted(k for k in set(saved) | set(fingerprint) if saved.get(k) != fingerprint.get(k))
            if changed:
                raise UsageError(f"--resume: {out} was made with different {', '.join(changed)}; "
                                 "rerun without --resume (or with the original data and flags)")
        elif self.root.exists():
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        _atomic_write(identity, json.dumps(fingerprint, indent=2, sort_keys=True))

    def stage(self, name: str) -> StageCheckpoint:
        return StageCheckpoint(self.root, _safe(name))


class StageCheckpoint:
    """One stage's checkpoints: its latest round states and, once finished, its outputs."""

    def __init__(self, root: Path, name: str):
        self.root, self.name = root, name

    def _manager(self):
        import tensorflow_federated as tff

        return tff.program.FileProgramStateManager(self.root / self.name, prefix="round_", keep_total=2,
                                                   keep_first=False)

    def load_round(self, structure):
        """The latest readable round state (shaped like `structure`), or None when none was saved.

        A save cut short by SIGKILL or Ctrl-C leaves a torn latest version; the one before it (two are
        kept) is then used, and the rounds after it are recomputed, deterministically.
        """
        manager = self._manager()
        versions = sorted(run_sync(manager.get_versions()) or [], reverse=True)
        errors = []
        for version in versions:
            try:
                return run_sync(manager.load(version, structure))
            except Exception as err:  # torn or foreign SavedModel
                errors.append(f"round {version}: {type(err).__name__}")
        if errors:
            raise UsageError(f"--resume: no readable checkpoint of stage {self.name!r} under {self.root} "
                             f"({'; '.join(errors)}); rerun without --resume")
        return None

    def save_round(self, state, round_num: int) -> None:
        run_sync(self._manager().save(state, round_num))

    def load_done(self) -> dict[str, np.ndarray] | None:
        path = self.root / f"{self.name}.npz"
        if not path.exists():
            return None
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}

    def save_done(self, arrays: dict[str, np.ndarray]) -> None:
        tmp = self.root / f".{self.name}.tmp.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, self.root / f"{self.name}.npz")


def run_sync(coroutine):
    """Runs a `tff.program` coroutine to completion, also where an event loop already runs (Jupyter).

    Not `asyncio.run`: its runner turns Ctrl-C into a task cancellation that TFF's file coroutines never
    finish, and the program hangs; a plain private loop lets KeyboardInterrupt propagate.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _run_on_private_loop(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(_run_on_private_loop, coroutine).result()


def _run_on_private_loop(coroutine):
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coroutine)
    finally:
        loop.close()


def _safe(stage: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in stage)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)

"""Checkpoints of a run folder: per-round program state of every federated stage, and finished stages.

Round state (server state, every market's client state, the early-stopping bookkeeping) is saved with
`tff.program.FileProgramStateManager` under `OUT/checkpoints/<stage>/`, after every round. A stage that
finished stores its outputs (one `.npz`) and is skipped on resume. Every stage is a deterministic function
of its inputs, the seed and the round number, so `--resume` reproduces the uninterrupted run exactly. A run
without `--resume` starts from scratch and clears old checkpoints.

Write protocol, so that a kill at any instant (SIGKILL, Ctrl-C, out of memory) leaves nothing resume trips
on: every file and round folder is written under a temporary name and renamed into place (a rename is
atomic), so a reader sees a version whole or not at all; a save first removes whatever a cut-short run left
at or past its round; a round that still cannot be read is deleted and recomputed from the one before.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tensorflow_federated as tff

from tff_fedmm.errors import UsageError

AUDIT_SUFFIX = ".audit.json"
SECRET_FILE = "secret_seed.txt"  # in the stage folder, which `save_done` removes


class RunCheckpoints:
    def __init__(self, out: Path, resume: bool, fingerprint: dict):
        """`fingerprint` (data files and settings) must match the checkpoint's, or resume is refused."""
        self.root = Path(out) / "checkpoints"
        identity = self.root / "fingerprint.json"
        self.resumed = resume and identity.exists()  # False: a fresh start, whatever the folder held
        if self.resumed:
            saved = json.loads(identity.read_text())
            changed = sorted(k for k in set(saved) | set(fingerprint) if saved.get(k) != fingerprint.get(k))
            if "checkpoint_format" in changed:  # no flags reproduce another format's stage names
                raise UsageError(f"--resume: {out} holds checkpoints of format {saved.get('checkpoint_format')} "
                                 f"from another tff_fedmm (this one reads {fingerprint.get('checkpoint_format')}); "
                                 "rerun without --resume")
            if changed:
                raise UsageError(f"--resume: {out} was made with different {', '.join(changed)}; "
                                 "rerun without --resume (or with the original data and flags)")
        elif self.root.exists():
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        _atomic_write(identity, json.dumps(fingerprint, indent=2, sort_keys=True))

    def stage(self, name: str) -> StageCheckpoint:
        return StageCheckpoint(self.root, _safe(name))

    def audits(self) -> dict[str, dict]:
        """Every stage's privacy audit report (`StageCheckpoint.save_audit`), by stage name."""
        return {path.name.removesuffix(AUDIT_SUFFIX): json.loads(path.read_text())
                for path in self.root.glob(f"*{AUDIT_SUFFIX}")}


class StageCheckpoint:
    """One stage's checkpoints: its latest round states and, once finished, its outputs."""

    def __init__(self, root: Path, name: str):
        self.root, self.name = root, name

    def _manager(self):
        return tff.program.FileProgramStateManager(self._folder(), prefix="round_", keep_total=2,
                                                   keep_first=False)

    def load_round(self, structure):
        """The latest readable round state (shaped like `structure`), or None when none was saved.

        A version that cannot be read (a save or a removal cut short) is deleted, and the one before it is
        used: the rounds after it are recomputed, deterministically, and saved again.
        """
        manager = self._manager()
        errors = []
        for version in sorted(run_sync(manager.get_versions()) or [], reverse=True):
            try:
                return run_sync(manager.load(version, structure))
            except Exception as err:  # torn or foreign SavedModel
                errors.append(f"round {version}: {type(err).__name__}")
                shutil.rmtree(self._version_path(version), ignore_errors=True)
        if errors:
            raise UsageError(f"--resume: no readable checkpoint of stage {self.name!r} under {self.root} "
                             f"({'; '.join(errors)}); rerun without --resume")
        return None

    def save_round(self, state, round_num: int) -> None:
        """Saves round `round_num`'s state; TFF writes it to a temporary folder and renames it into place.

        Whatever a kill left in the stage's folder at or past this round (a version from a timeline that
        is being recomputed, a temporary folder of a save cut short) is removed first, so the save never
        meets an existing version.
        """
        manager = self._manager()
        stale = [v for v in run_sync(manager.get_versions()) or [] if v >= round_num]
        for path in [*map(self._version_path, stale), *self._folder().glob("round_*_temp*")]:
            shutil.rmtree(path, ignore_errors=True)
        run_sync(manager.save(state, round_num))

    def secret_seed(self, draw: Callable[[], int]) -> int:
        """The stage's secret seed: drawn by `draw()` once and kept in the stage's folder, so that a resumed stage
        redraws exactly the randomness of the rounds it recomputes (a recomputed round then releases the
        same values, never a second noised version of them). `save_done` deletes it with the round states."""
        path = self._folder() / SECRET_FILE
        if path.exists():
            return int(path.read_text())
        seed = int(draw())
        self._folder().mkdir(parents=True, exist_ok=True)
        _atomic_write(path, str(seed))
        return seed

    def _folder(self) -> Path:
        return self.root / self.name

    def _version_path(self, version: int) -> Path:
        return self._folder() / f"round_{version}"

    def load_done(self) -> dict[str, np.ndarray] | None:
        path = self.root / f"{self.name}.npz"
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return {key: data[key] for key in data.files}
        except (OSError, ValueError) as err:  # not written by save_done, which renames a whole file
            raise UsageError(f"--resume: the finished stage {self.name!r} in {path} cannot be read "
                             f"({type(err).__name__}); rerun without --resume") from None

    def save_audit(self, report: dict) -> None:
        """Stores the privacy audit of the stage's process. Kept when the stage finishes: it describes the
        process, holds no value of it."""
        _atomic_write(self.root / f"{self.name}{AUDIT_SUFFIX}", json.dumps(report, indent=2, sort_keys=True))

    def save_done(self, arrays: dict[str, np.ndarray]) -> None:
        """Stores a finished stage's outputs, then deletes its round states: resume no longer needs them,
        and they hold what must not outlive the stage (the seed of secret DP noise)."""
        tmp = self.root / f".{self.name}.tmp.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, self.root / f"{self.name}.npz")
        shutil.rmtree(self._folder(), ignore_errors=True)


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

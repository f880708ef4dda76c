"""Progress bars (tqdm, on stderr): one over method × backbone stages, one over the rounds of a stage.

The stages report through the module-level reporter set by `reporting(...)`, so the round loops need
no extra parameters; outside `reporting` (tests, library use) every call is a no-op.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

_reporter: _Reporter | None = None


class _Reporter:
    def __init__(self, stages: int):
        from tqdm import tqdm

        self._tqdm = tqdm
        self.stages = tqdm(total=stages, desc="methods", unit="run", file=sys.stderr, position=0)
        self.rounds = None

    def start_stage(self, name: str, rounds: int) -> None:
        self.end_stage()
        self.rounds = self._tqdm(total=rounds, desc=name, unit="round", file=sys.stderr, position=1, leave=False)

    def round_done(self, **postfix: float) -> None:
        if self.rounds is not None:
            self.rounds.set_postfix({k: f"{v:.4f}" for k, v in postfix.items()}, refresh=False)
            self.rounds.update(1)

    def end_stage(self, finished: bool = False) -> None:
        if self.rounds is not None:
            self.rounds.close()
            self.rounds = None
        if finished:
            self.stages.update(1)

    def close(self) -> None:
        self.end_stage()
        self.stages.close()


@contextlib.contextmanager
def reporting(enabled: bool, stages: int) -> Iterator[None]:
    global _reporter
    _reporter = _Reporter(stages) if enabled else None
    try:
        yield
    finally:
        if _reporter is not None:
            _reporter.close()
        _reporter = None


def start_stage(name: str, rounds: int) -> None:
    if _reporter is not None:
        _reporter.start_stage(name, rounds)


def round_done(**postfix: float) -> None:
    if _reporter is not None:
        _reporter.round_done(**postfix)


def stage_done() -> None:
    if _reporter is not None:
        _reporter.end_stage(finished=True)

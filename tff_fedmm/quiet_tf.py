"""Keep TensorFlow's C++ start-up noise off the user's terminal, from every entry point.

TF 2.14's CPU wheel logs three ERROR lines while its native library loads ("Unable to register cuDNN /
cuFFT / cuBLAS factory: Attempting to register factory for plugin ... when one has already been
registered"). They are harmless (XLA's CUDA plugins register twice) but read as failures, and being ERROR
level they pass `TF_CPP_MIN_LOG_LEVEL=2`; level 3 would also hide real errors. They are written by C++
straight to file descriptor 2, so no Python logging filter can reach them.

`install()` (run by `import tff_fedmm`) therefore does two things once per process:
- sets the `TF_CPP_MIN_LOG_LEVEL=2` default (INFO and WARNING start-up lines off; a user's own setting
  wins; child processes such as TFF's `worker_binary` inherit it);
- puts a one-shot import hook in front of `import tensorflow`: while TensorFlow's package loads, fd 2 goes
  to a temporary file; afterwards every line except those three is written back to the real fd 2, so a
  genuine error during the import still reaches the terminal (only its interleaving with stdout changes).

The hook only sees an import that happens after `import tff_fedmm`: the `fedmm` command, `tasks/` and
`fedmm worker` import it first; the notebook's first cell does too.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import re
import sys
import tempfile
from collections.abc import Iterator

NOISE = re.compile(rb"Unable to register (cuDNN|cuFFT|cuBLAS) factory: Attempting to register factory for plugin")
ENV_LEVEL = ("TF_CPP_MIN_LOG_LEVEL", "2")


def install() -> None:
    """Sets the log-level default and arms the import hook, unless TensorFlow is already loaded."""
    os.environ.setdefault(*ENV_LEVEL)
    if "tensorflow" in sys.modules or any(isinstance(f, _TensorFlowFinder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _TensorFlowFinder())


@contextlib.contextmanager
def filtered_fd2(noise: re.Pattern[bytes] = NOISE) -> Iterator[None]:
    """Captures fd 2 for the block's duration, then replays every line that `noise` does not match."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = b"".join(line for line in captured.readlines() if not noise.search(line))
            if kept:
                os.write(2, kept)


class _TensorFlowFinder(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` the normal way and wraps its loader in `filtered_fd2`; removes itself after."""

    def find_spec(self, name, path=None, target=None):  # noqa: ANN001 (the importlib protocol)
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _FilteredLoader(spec.loader)
        return spec


class _FilteredLoader(importlib.abc.Loader):
    """Delegates to TensorFlow's own loader, and hands the module back to it once it has loaded."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec):  # noqa: ANN201
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:  # noqa: ANN001
        module.__loader__ = module.__spec__.loader = self._loader
        with filtered_fd2():
            self._loader.exec_module(module)

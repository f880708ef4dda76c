"""What every `fedmm` command and every `tasks/` script shares: the parser that keeps the one-line error
contract, the data and seed flags, loading the chosen markets, and the guard that turns user mistakes into
one stderr line with exit status 2 and Ctrl-C into status 130.

It sits below `cli`, `cli_compare` and the tasks, so none of them imports another entry point.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from tff_fedmm.errors import UsageError

if TYPE_CHECKING:
    from tff_fedmm.data.markets import MarketSet

USAGE_ERROR_STATUS = 2
INTERRUPTED_STATUS = 130  # 128 + SIGINT, as shells report it
INTERRUPTED = "fedmm: interrupted; an unfinished run folder stays marked INCOMPLETE and continues with --resume"



class Parser(argparse.ArgumentParser):
    """argparse would print the usage block and exit; raising keeps the one-line error contract."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)



def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that choose markets; every command that loads data shares them."""
    parser.add_argument(
        "--data",
        default="synthetic",
        metavar="DIR|synthetic",
        help="directory of <market>_5core.txt files, or 'synthetic' for generated markets (default)",
    )
    parser.add_argument(
        "--markets", type=market_list, metavar="A,B,...", help="comma-separated markets to use (default: all)"
    )
    parser.add_argument("--data-seed", type=int, default=0,
                        help="seed of the synthetic generator and of every evaluation candidate set (default 0)")


def add_seed_argument(parser: argparse.ArgumentParser) -> None:
    """`--seed`: the training seed of commands and tasks that train one seed (`--data-seed` fixes the data)."""
    parser.add_argument("--seed", type=int, default=0,
                        help="training seed: initialisation, shuffles, drawn training negatives (default 0)")


def market_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated market names such as de,fr, got {text!r}")
    return names


def load_market_set(args: argparse.Namespace) -> MarketSet:
    # Lazy: pandas and the loaders cost ~1 s, which `fedmm --help` and bad-flag errors must not pay.
    from tff_fedmm.data.markets import load_markets
    from tff_fedmm.data.synthetic import SyntheticConfig

    return load_markets(args.data, args.markets, SyntheticConfig(seed=args.data_seed))



def run_guarded(body: Callable[[], int]) -> int:
    """Runs a command body; user mistakes (also argparse's) become one stderr line and exit status 2."""
    try:
        return body()
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return INTERRUPTED_STATUS
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else USAGE_ERROR_STATUS
    except UsageError as err:
        message = " ".join(str(err).split())
        print(f"fedmm: error: {message}", file=sys.stderr)
        return USAGE_ERROR_STATUS



@contextlib.contextmanager
def exit_at_once_on_ctrl_c() -> Iterator[None]:
    """Ctrl-C ends the command on the spot: one line, status 130.

    Not Python's KeyboardInterrupt, which is raised wherever the main thread happens to be: inside a
    garbage-collection callback (JAX registers one) Python prints it as an ignored exception, traceback
    and all, and the run carries on. Stopping at any instant is safe: every file and checkpoint is written
    under a temporary name and renamed into place, the run folder stays INCOMPLETE, and the TFF worker dies
    with this process (PR_SET_PDEATHSIG). The previous handler is restored when the command returns.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame) -> None:
        os.write(2, f"\n{INTERRUPTED}\n".encode())  # not the buffered sys.stderr: it may be mid-write
        os._exit(INTERRUPTED_STATUS)

    previous = signal.signal(signal.SIGINT, stop)
    try:
        yield
    finally:
        if previous is not None:  # None: a handler not installed from Python, which cannot be put back
            signal.signal(signal.SIGINT, previous)

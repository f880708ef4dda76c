"""FedMM's cost against TFF's FedAvg and plain Keras, one line per figure (same as `fedmm bench`).

    python tasks/bench.py                                   # embedded synthetic markets
    python tasks/bench.py --data ../shared/data/xmarket-electronics
    python tasks/bench.py --quick                           # tiny markets, a few rounds

Flags: --data/--markets/--seed, --backbone, --rounds N, --warmup N, --scaling 5,10,20,50|off,
--scaling-rounds N, --memory-rounds N (0 skips), --quick. The logic lives in `tff_fedmm.bench`.
"""

from __future__ import annotations

import sys

from tff_fedmm.cli import main as fedmm_main


def main(argv: list[str] | None = None) -> int:
    return fedmm_main(["bench", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())

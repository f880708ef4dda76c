"""FedMM's cost against TFF's FedAvg and plain Keras, one line per figure: `fedmm bench`, same flags (`--help`).

    python tasks/bench.py --data ../shared/data/xmarket-electronics
"""

from __future__ import annotations

import sys

from tff_fedmm.cli import main as fedmm_main


def main(argv: list[str] | None = None) -> int:
    return fedmm_main(["bench", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())

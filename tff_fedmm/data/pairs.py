"""A file of (user, item) pairs to score (`fedmm score --pairs FILE`), read with errors naming file and line.

One pair per line: the user's and the item's raw IDs, separated like the data files (whitespace, commas or
tabs, as the first line shows). A first line holding the columns `userId` and `itemId` is a header and
says where they are, so a market's own data file (`userId itemId rate date`) is a valid pairs file;
without one, the first two fields of every line are the pair. Blank lines are skipped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tff_fedmm.data.loading import splitter
from tff_fedmm.errors import DataError

HEADER = ("userId", "itemId")


def read_pairs(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(users, items, line numbers): raw IDs as strings, and each pair's 1-based line in the file."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read ({err}); expected a UTF-8 text file of 'userId itemId' lines") from None
    numbered = [(n, line) for n, line in enumerate(lines, start=1) if line.strip()]
    if not numbered:
        raise DataError(f"{path}: no pairs; expected one 'userId itemId' pair per line")
    split = splitter(numbered[0][1])
    first = split(numbered[0][1])
    columns, width = (0, 1), 2
    if all(name in first for name in HEADER):
        columns, width = (first.index(HEADER[0]), first.index(HEADER[1])), len(first)
        numbered = numbered[1:]
    users, items, numbers = [], [], []
    for number, line in numbered:
        cells = split(line)
        if len(cells) < width or any(not cells[c] for c in columns):
            raise DataError(f"{path}:{number}: {len(cells)} field(s); expected a user ID and an item ID"
                            + (f" in the header's {width} columns" if width > 2 else ""))
        users.append(cells[columns[0]])
        items.append(cells[columns[1]])
        numbers.append(number)
    if not numbers:
        raise DataError(f"{path}: a header but no pairs; expected one 'userId itemId' pair per line")
    return np.array(users, dtype=str), np.array(items, dtype=str), np.array(numbers)

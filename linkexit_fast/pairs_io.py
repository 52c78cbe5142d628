"""Text files of node pairs, read a bounded number of lines at a time.

The format: one pair a line, two integer ids separated by spaces, tabs or a comma; further
columns are ignored; blank lines and lines starting with ``#`` are skipped, and so is a first
line that is not two integers (a header such as ``source,target``). ``.gz`` files are read
through gzip. Errors name the file and the line.
"""
from __future__ import annotations

import gzip
import itertools
import os
import re
from typing import Iterator, List, Tuple

import numpy as np
import torch

from .validation import check_count

__all__ = ["iter_pair_chunks", "read_pairs", "CHUNK_LINES"]

# Lines per parsing step: the step's text, token list and arrays stay a few tens of MB.
CHUNK_LINES = 1 << 18
# A block where every line is exactly two ASCII integers parses in one vectorised pass; any
# other block (comments, a header, extra columns, a bad line) goes line by line.
# Each line matches in one way only, so a failing match cannot backtrack exponentially.
_PLAIN = re.compile(r"(?:[ \t]*-?[0-9]+(?:[ \t]+|[ \t]*,[ \t]*)-?[0-9]+[ \t]*\r?\n)*")


def _open(path: str):
    if not os.path.exists(path):
        raise FileNotFoundError(f"edge-list file not found: {path}")
    return gzip.open(path, "rt") if path.endswith(".gz") else open(path, "r")


def _parse_lines(path: str, lines: List[str], first: int, header_ok: bool) -> np.ndarray:
    """Pairs ``[k, 2]`` of ``lines`` (the first is line ``first``), one line at a time."""
    rows: List[Tuple[int, int]] = []
    for lineno, line in enumerate(lines, first):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        parts = s.replace(",", " ").split()
        if len(parts) < 2:
            raise ValueError(f"{path}:{lineno}: expected two node ids, got {s!r} (truncated file?)")
        try:
            u, v = int(parts[0]), int(parts[1])
        except ValueError:
            if lineno == 1 and header_ok:
                continue  # header line such as "source,target"
            raise ValueError(f"{path}:{lineno}: non-integer node id in {s!r}") from None
        if min(u, v) < 0:
            raise ValueError(f"{path}:{lineno}: negative node id {min(u, v)}")
        if max(u, v) >= 2 ** 63:
            raise ValueError(f"{path}:{lineno}: node id {max(u, v)} does not fit in 64 bits")
        rows.append((u, v))
    return np.array(rows, dtype=np.int64).reshape(-1, 2)


def iter_pair_chunks(path, chunk_lines: int = CHUNK_LINES) -> Iterator[torch.Tensor]:
    """The pairs of a text file as int64 tensors ``[k, 2]``, ``k <= chunk_lines``, in file order.

    Memory is bounded by ``chunk_lines`` whatever the file's size.

    Raises:
        FileNotFoundError: no such file.
        TypeError / ValueError: ``chunk_lines`` is not a positive int.
        ValueError: a line with fewer than two ids, a non-integer or negative id (with the line).
    """
    path = os.fspath(path)
    chunk_lines = check_count(chunk_lines, "chunk_lines", minimum=1)
    with _open(path) as f:
        first = 1
        while True:
            lines = list(itertools.islice(f, chunk_lines))
            if not lines:
                return
            text = "".join(lines)
            if not text.endswith("\n"):
                text += "\n"
            arr = None
            if _PLAIN.fullmatch(text):
                try:
                    arr = np.fromiter(map(int, text.replace(",", " ").split()), dtype=np.int64,
                                      count=2 * len(lines)).reshape(-1, 2)
                except OverflowError:  # an id beyond 64 bits: the line-by-line pass names it
                    pass
            if arr is None:
                arr = _parse_lines(path, lines, first, header_ok=first == 1)
            if arr.size and arr.min() < 0:  # only from the vectorised pass: one pair a line
                row = int(np.argmax((arr < 0).any(1)))
                raise ValueError(f"{path}:{first + row}: negative node id {int(arr[row].min())}")
            first += len(lines)
            if arr.shape[0]:
                yield torch.from_numpy(arr)


def read_pairs(path) -> torch.Tensor:
    """All the pairs of a text file, ``[P, 2]`` int64 (see :func:`iter_pair_chunks`)."""
    parts = list(iter_pair_chunks(path))
    return torch.cat(parts) if parts else torch.empty(0, 2, dtype=torch.int64)

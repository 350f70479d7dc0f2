"""`$readmemh` / `$writememh` files of packed lane vectors.

A word packs ``lanes`` fields of ``width`` bits, lane 0 in the least significant bits (the
order of Amaranth's ArrayLayout). Signed fields are stored in two's complement.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["pack_words", "unpack_words", "write_hex", "read_hex"]


def pack_words(values: np.ndarray, width: int) -> list[int]:
    """``values[words, lanes]`` (signed or unsigned ints) -> one Python int per word."""
    values = np.asarray(values, dtype=np.int64)
    mask = (1 << width) - 1
    words = []
    for row in values.tolist():
        w = 0
        for lane, v in enumerate(row):
            w |= (v & mask) << (lane * width)
        words.append(w)
    return words


def unpack_words(words: list[int], lanes: int, width: int, *, signed: bool, offset: int = 0) -> np.ndarray:
    """Inverse of :func:`pack_words`, starting ``offset`` bits into each word."""
    mask = (1 << width) - 1
    out = np.empty((len(words), lanes), dtype=np.int64)
    for i, w in enumerate(words):
        for lane in range(lanes):
            v = (w >> (offset + lane * width)) & mask
            if signed and v >> (width - 1):
                v -= 1 << width
            out[i, lane] = v
    return out


def write_hex(path: Path, words: list[int], bits: int) -> None:
    digits = max(1, (bits + 3) // 4)
    Path(path).write_text("".join(f"{w:0{digits}x}\n" for w in words))


def read_hex(path: Path) -> list[int]:
    words = []
    for line in Path(path).read_text().splitlines():
        line = line.split("//")[0].strip()
        if line and not line.startswith("@"):
            words.append(int(line, 16))
    return words

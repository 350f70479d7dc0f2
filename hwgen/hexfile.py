"""`$readmemh` / `$writememh` files of packed lane vectors.

A word packs ``lanes`` fields of ``width`` bits, lane 0 in the least significant bits (the
order of Amaranth's ArrayLayout). Signed fields are stored in two's complement. Packing goes
through bit matrices so that files of 10^5 wide words take milliseconds, not seconds.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["pack_bits", "unpack_fields", "write_words", "read_words", "write_values", "write_lanes"]


def pack_bits(values: np.ndarray, width: int) -> np.ndarray:
    """``values[words, lanes]`` -> bit matrix ``[words, lanes*width]`` (uint8, LSB first)."""
    values = np.asarray(values, dtype=np.int64)
    if width > 62:
        raise ValueError(f"field width {width} > 62 bits")
    shifts = np.arange(width, dtype=np.int64)
    bits = (values[..., None] >> shifts) & 1          # two's complement falls out of >>
    return bits.reshape(values.shape[0], -1).astype(np.uint8)


def unpack_fields(bits: np.ndarray, lanes: int, width: int, *, signed: bool, offset: int = 0) -> np.ndarray:
    """Fields ``[words, lanes]`` of ``width`` bits starting at bit ``offset`` of a bit matrix."""
    if width > 62:
        raise ValueError(f"field width {width} > 62 bits")
    field = bits[:, offset:offset + lanes * width].reshape(bits.shape[0], lanes, width).astype(np.int64)
    weights = np.left_shift(np.int64(1), np.arange(width, dtype=np.int64))
    out = field @ weights
    if signed:
        out = np.where(field[..., -1] == 1, out - (np.int64(1) << width), out)
    return out


def write_words(path: Path, bits: np.ndarray) -> None:
    """Write a bit matrix ``[words, nbits]`` as one hex word per line."""
    nbits = bits.shape[1]
    digits = max(1, (nbits + 3) // 4)
    pad = (-nbits) % 8
    padded = np.pad(bits, ((0, 0), (0, pad)))
    data = np.packbits(padded, axis=1, bitorder="little")[:, ::-1]  # most significant byte first
    lines = (row.tobytes().hex()[-digits:] for row in data)
    Path(path).write_text("".join(line + "\n" for line in lines))


def read_words(path: Path, nbits: int) -> np.ndarray:
    """Read a `$writememh` file into a bit matrix ``[words, nbits]``."""
    nbytes = (nbits + 7) // 8
    rows = []
    for line in Path(path).read_text().splitlines():
        line = line.split("//")[0].strip()
        if not line or line.startswith("@"):
            continue
        rows.append(bytes.fromhex(line.rjust(2 * nbytes, "0")[-2 * nbytes:])[::-1])
    if not rows:
        return np.zeros((0, nbits), dtype=np.uint8)
    data = np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(len(rows), nbytes)
    return np.unpackbits(data, axis=1, bitorder="little")[:, :nbits]


def write_lanes(path: Path, values: np.ndarray, width: int, chunk: int = 1 << 16) -> None:
    """Words of ``lanes`` fields (``values[words, lanes]``), one hex word per line; written in
    chunks so that memories of tens of millions of weights stay within a few MB of RAM."""
    values = np.asarray(values, dtype=np.int64)
    with open(path, "w") as fh:
        for i in range(0, len(values), chunk):
            bits = pack_bits(values[i:i + chunk], width)
            nbits = bits.shape[1]
            digits = max(1, (nbits + 3) // 4)
            pad = (-nbits) % 8
            data = np.packbits(np.pad(bits, ((0, 0), (0, pad))), axis=1, bitorder="little")[:, ::-1]
            fh.write("".join(row.tobytes().hex()[-digits:] + "\n" for row in data))


def write_values(path: Path, values: np.ndarray, width: int) -> None:
    """One ``width``-bit two's complement value per line, for large single-field memories
    (vectorized through a nibble table: tens of millions of words in seconds)."""
    values = np.asarray(values, dtype=np.int64).reshape(-1)
    digits = max(1, (width + 3) // 4)
    v = values & ((1 << width) - 1)
    nibbles = (v[:, None] >> (4 * np.arange(digits - 1, -1, -1, dtype=np.int64))) & 15
    table = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    out = np.empty((len(v), digits + 1), dtype=np.uint8)
    out[:, :digits] = table[nibbles]
    out[:, digits] = ord("\n")
    Path(path).write_bytes(out.tobytes())

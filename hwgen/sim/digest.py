"""Digests of memory writes: what the core harness reports per instruction instead of every write.

For each instruction the harness (templates/core_harness.sv) reports, for the memory it wrote, the
number of words written, the lowest and highest address, and an order-independent 64-bit digest

    digest = sum over the writes of word_hash(addr, data)   (mod 2^64)
    word_hash(addr, data) = h_C,  h_0 = mix(addr),  h_{c+1} = mix(h_c ^ data[64c +: 64])

with ``mix`` the splitmix64 finaliser and ``data`` split into ``C = ceil(width / 64)`` 64-bit
chunks, lane 0 in the low bits (two's complement lanes of ``lane_width`` bits). :func:`digest`
computes the same from the golden tensor's words at their addresses, so the check of a layer
costs one log line, not a line per word. The count and the address range make a word written twice
or outside the layer's region visible even where the digest alone could not tell; a digest
mismatch is then located exactly by running that image again with the instruction's writes
logged (``hwgen.sim.core``).
"""
from __future__ import annotations

import numpy as np

__all__ = ["MASK64", "mix", "pack_chunks", "word_hashes", "digest"]

MASK64 = (1 << 64) - 1
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on uint64 arrays (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def pack_chunks(words: np.ndarray, lane_width: int) -> np.ndarray:
    """``words[N, lanes]`` (signed or unsigned ints) -> ``uint64 [N, C]``: the packed word in
    64-bit chunks, lane ``l`` at bits ``l * lane_width ..``."""
    words = np.asarray(words, dtype=np.int64)
    n, lanes = words.shape
    chunks = np.zeros((n, -(-lanes * lane_width // 64)), dtype=np.uint64)
    mask = np.uint64((1 << lane_width) - 1)
    for lane in range(lanes):
        v = words[:, lane].astype(np.uint64) & mask       # two's complement to lane_width bits
        offset = lane * lane_width
        c, shift = divmod(offset, 64)
        chunks[:, c] |= v << np.uint64(shift)
        if shift + lane_width > 64:
            chunks[:, c + 1] |= v >> np.uint64(64 - shift)
    return chunks


def word_hashes(addrs: np.ndarray, chunks: np.ndarray) -> np.ndarray:
    h = mix(np.asarray(addrs, dtype=np.uint64))
    for c in range(chunks.shape[1]):
        h = mix(h ^ chunks[:, c])
    return h


def digest(addrs: np.ndarray, words: np.ndarray, lane_width: int) -> int:
    """The harness's digest of writing ``words[N, lanes]`` at ``addrs[N]``."""
    if len(addrs) == 0:
        return 0
    with np.errstate(over="ignore"):
        return int(word_hashes(addrs, pack_chunks(words, lane_width)).sum(dtype=np.uint64))

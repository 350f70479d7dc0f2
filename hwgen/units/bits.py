"""Small combinational helpers on bit vectors, shared by the units and the core's engines."""
from __future__ import annotations

from functools import reduce
from operator import or_

from amaranth import Const, Module, Mux, Signal

__all__ = ["lowest_onehot", "onehot_index"]


def lowest_onehot(m: Module, x, name: str) -> Signal:
    """One-hot of the lowest set bit of ``x`` (zero if none): x & -x."""
    oh = Signal(len(x), name=name)
    m.d.comb += oh.eq(x & (~x + 1))
    return oh


def onehot_index(m: Module, onehot, name: str) -> Signal:
    """Index of the set bit of a one-hot vector (OR of the indices: no priority chain)."""
    n = len(onehot)
    idx = Signal(range(max(n, 2)), name=name)
    m.d.comb += idx.eq(reduce(or_, [Mux(onehot[i], i, 0) for i in range(n)], Const(0, 1)))
    return idx

"""Exact comparison of integer arrays, reporting the first mismatch by named coordinates."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

__all__ = ["first_mismatch", "assert_exact"]


def first_mismatch(expected, got, axes: Sequence[str]) -> tuple[tuple[int, ...], int, int] | None:
    """Index, expected and got value of the first differing element (C order), or None."""
    expected, got = np.asarray(expected), np.asarray(got)
    if expected.shape != got.shape:
        raise AssertionError(f"shape differs: expected {expected.shape}, got {got.shape} (axes {tuple(axes)})")
    diff = np.argwhere(expected != got)
    if len(diff) == 0:
        return None
    idx = tuple(int(i) for i in diff[0])
    return idx, int(expected[idx]), int(got[idx])


def assert_exact(what: str, expected, got, axes: Sequence[str],
                 locate: Callable[[tuple[int, ...]], str] | None = None) -> None:
    """``expected == got`` on the whole array, or AssertionError naming the first mismatch:
    ``what`` differs at axis=value, ...: expected E, got G (K mismatches of M)."""
    found = first_mismatch(expected, got, axes)
    if found is None:
        return
    idx, e, g = found
    count = int((np.asarray(expected) != np.asarray(got)).sum())
    where = ", ".join(f"{a}={i}" for a, i in zip(axes, idx))
    extra = f" ({locate(idx)})" if locate else ""
    raise AssertionError(f"{what} differs at {where}{extra}: expected {e}, got {g} "
                         f"({count} mismatches of {np.asarray(expected).size})")

"""Realistic firing rates for a model with random weights.

Random weights and BatchNorm statistics (``golden.model.randomize_statistics``) make a model whose
spikes die out or saturate with depth: the membrane-shortcut streams drift, and deep layers fire
at 0.8-0.9 or almost never. A hardware run on such a model measures the wrong thing. The paper's
trained models fire at 0.02-0.5 (its appendix table; mean about 0.27).

:func:`calibrate_firing_rates` walks the folded model's LIF layers in execution order and, for each
LIF that reads a conv, shifts that conv's bias by one value ``delta`` so the LIF fires at a target
rate on the given images (a target drawn per layer, seeded, uniformly in ``[low, high]``). A bias
shift adds ``delta`` to the LIF's input current at every position and timestep, so the rate is a
monotone function of ``delta`` and a bisection on the LIF alone finds it; the layers after it are
then recomputed with the new bias. LIFs that read the attention or the head's token mean follow
their inputs. The result is an ordinary folded model (quantize it as any other).
"""
from __future__ import annotations

import torch
from torch import Tensor

from golden.fold import INPUT, ConvStep, FoldedModel, LIFStep
from golden.neuron import multistep_lif

__all__ = ["calibrate_firing_rates"]


def _rate_at(x: Tensor, lif: LIFStep, delta: float) -> float:
    return float(multistep_lif(x + delta, v_threshold=lif.v_threshold, tau=lif.tau).mean())


def _shift_for(x: Tensor, lif: LIFStep, target: float, iterations: int = 40) -> float:
    """The ``delta`` with ``rate(x + delta)`` closest to ``target`` (bisection; rate grows with delta)."""
    span = float(x.abs().max()) + 4 * lif.v_threshold + 1.0
    lo, hi = -span, span
    for _ in range(iterations):
        mid = (lo + hi) / 2
        if _rate_at(x, lif, mid) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


@torch.no_grad()
def calibrate_firing_rates(folded: FoldedModel, images: Tensor, *, low: float = 0.1, high: float = 0.4,
                           seed: int = 0, log=None) -> dict[str, float]:
    """Shift conv biases of ``folded`` in place so each LIF reading a conv fires at a seeded target
    rate in ``[low, high]`` on ``images`` (``[B, C, H, W]``, the folded model's input). Returns the
    rate reached per LIF layer (all of them, the followers included)."""
    if not 0.0 < low <= high < 1.0:
        raise ValueError(f"need 0 < low <= high < 1, not low={low}, high={high}")
    gen = torch.Generator().manual_seed(seed)
    steps = list(folded)
    index = {s.name: i for i, s in enumerate(steps)}
    env: dict[str, Tensor] = {INPUT: folded.encode_input(images)}
    done = -1                                   # steps[0 .. done] are in env

    def compute_up_to(i: int) -> None:
        nonlocal done
        for j in range(done + 1, i + 1):
            s = steps[j]
            env[s.name] = s(*(env[n] for n in s.inputs))
        done = max(done, i)

    reached = {}
    for i, step in enumerate(steps):
        if not isinstance(step, LIFStep):
            continue
        src = steps[index[step.src]] if step.src in index else None
        if isinstance(src, ConvStep):
            compute_up_to(index[src.name])
            target = low + (high - low) * float(torch.rand((), generator=gen))
            delta = _shift_for(env[src.name], step, target)
            src.bias += delta
            done = index[src.name] - 1         # the conv and everything after it: computed again
        compute_up_to(i)
        reached[step.name] = float(env[step.name].mean())
        if log:
            log(f"{step.name}: rate {reached[step.name]:.3f}")
    return reached

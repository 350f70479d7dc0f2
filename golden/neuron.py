"""Float multi-step LIF neuron with spikingjelly ``MultiStepLIFNode`` semantics.

Every neuron of Meta-SpikeFormer is spikingjelly's
``MultiStepLIFNode(tau=2.0, v_threshold=1.0, v_reset=0.0, decay_input=True, detach_reset=True)``.
For an input current ``X`` of shape ``[T, ...]`` (time first) it computes, per element::

    V[-1] = 0
    H[t]  = V[t-1] + (X[t] - V[t-1]) / tau        # charge (decay_input=True, v_reset=0)
    S[t]  = 1 if H[t] >= v_th else 0              # fire (Heaviside, surrogate gradient)
    V[t]  = H[t] * (1 - S[t])                     # hard reset to 0

The forward pass uses exactly this float arithmetic in this order, so it is bit-identical to
spikingjelly's torch backend (and to its cupy backend: with tau = 2, ``/ tau`` and
``* (1 / tau)`` are both an exact halving). ``H`` is the *pre-spike* membrane: it is what a
quantizer calibrates thresholds on, so it can be returned (``return_membrane=True``) or recorded
on the module (``record=True``).

Backward: the Heaviside step uses spikingjelly's default surrogate, ``surrogate.Sigmoid(alpha=4)``
(dS/dH = alpha * sigmoid(alpha * (H - v_th)) * (1 - sigmoid(alpha * (H - v_th)))), and the reset
uses the detached spike (``detach_reset=True``, as the reference model does), so no gradient flows
through the reset path.

The membrane is not module state: every call starts from ``V[-1] = 0`` (membranes are cleared
between images), and nothing here appears in a state dict except the learnable threshold of
:class:`LearnableThresholdLIFNode` (SDSA-4).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn

__all__ = [
    "sigmoid_heaviside",
    "multistep_lif",
    "MultiStepLIFNode",
    "LearnableThresholdLIFNode",
    "iter_lif_nodes",
    "set_record",
]

#: spikingjelly's default surrogate sharpness (``surrogate.Sigmoid(alpha=4.0)``).
SURROGATE_ALPHA = 4.0


class _SigmoidHeaviside(torch.autograd.Function):
    """Heaviside step ``x >= 0`` forward, derivative of ``sigmoid(alpha * x)`` backward."""

    @staticmethod
    def forward(ctx, x: Tensor, alpha: float) -> Tensor:
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        (x,) = ctx.saved_tensors
        sg = torch.sigmoid(ctx.alpha * x)
        return grad_output * (1.0 - sg) * sg * ctx.alpha, None


def sigmoid_heaviside(x: Tensor, alpha: float = SURROGATE_ALPHA) -> Tensor:
    """Spike function: ``(x >= 0)`` as float 0/1, with the sigmoid surrogate gradient.

    Args:
        x: any shape; usually ``H - v_threshold``.
        alpha: surrogate sharpness (spikingjelly default 4).
    """
    return _SigmoidHeaviside.apply(x, alpha)


def multistep_lif(
    x: Tensor,
    *,
    v_threshold: float | Tensor = 1.0,
    tau: float = 2.0,
    return_membrane: bool = False,
    surrogate_alpha: float = SURROGATE_ALPHA,
) -> Tensor | tuple[Tensor, Tensor]:
    """Run a LIF neuron over time (hard reset to 0, decay_input, detach_reset).

    Args:
        x: input current ``[T, ...]`` (time first; any trailing shape, e.g. ``[T, B, C, H, W]``).
        v_threshold: firing threshold; a float, or a tensor broadcastable to ``x[0]``
            (a learnable scalar for SDSA-4).
        tau: membrane time constant (2 everywhere in Meta-SpikeFormer).
        return_membrane: also return the pre-spike membrane ``H``.
        surrogate_alpha: sharpness of the sigmoid surrogate gradient.

    Returns:
        spikes ``S`` (same shape and dtype as ``x``, values 0.0/1.0), or ``(S, H)`` when
        ``return_membrane`` is true, ``H`` being the pre-spike membrane ``[T, ...]``.
    """
    if x.dim() < 1 or x.shape[0] < 1:
        raise ValueError(f"x must be [T, ...] with T >= 1, not shape {tuple(x.shape)}")
    v = torch.zeros_like(x[0])  # V[-1] = 0: membranes are cleared before every input
    spikes, membranes = [], []
    for t in range(x.shape[0]):
        h = v + (x[t] - v) / tau  # exactly spikingjelly's order: v + (x - (v - v_reset)) / tau
        # (h - v_th >= 0) is the same predicate as (h >= v_th) for IEEE floats (gradual underflow)
        s = sigmoid_heaviside(h - v_threshold, surrogate_alpha)
        # hard reset with the detached spike (detach_reset=True): no gradient through the reset
        v = h * (1.0 - s.detach())
        spikes.append(s)
        membranes.append(h)
    s_seq = torch.stack(spikes)
    if return_membrane:
        return s_seq, torch.stack(membranes)
    return s_seq


class MultiStepLIFNode(nn.Module):
    """LIF neuron layer over ``[T, ...]`` inputs (see :func:`multistep_lif`).

    Attributes:
        v_threshold: firing threshold (float).
        tau: membrane time constant.
        record: when true, every forward stores ``last_membrane`` (pre-spike ``H``) and
            ``last_spikes`` (detached, same shape as the input) for calibration.
        last_membrane, last_spikes: the recorded tensors, or ``None``.
    """

    def __init__(self, v_threshold: float = 1.0, tau: float = 2.0, *, record: bool = False):
        super().__init__()
        if tau <= 0:
            raise ValueError(f"tau must be positive, not {tau!r}")
        self.v_threshold = float(v_threshold)
        self.tau = float(tau)
        self.record = record
        self.last_membrane: Tensor | None = None
        self.last_spikes: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        """``x``: input current ``[T, ...]`` -> spikes, same shape."""
        if not self.record:
            return multistep_lif(x, v_threshold=self.v_threshold, tau=self.tau)
        spikes, membrane = multistep_lif(
            x, v_threshold=self.v_threshold, tau=self.tau, return_membrane=True
        )
        self.last_membrane = membrane.detach()
        self.last_spikes = spikes.detach()
        return spikes

    def threshold_value(self) -> float:
        """The current threshold as a Python float (learnable or not)."""
        v = self.v_threshold
        return float(v.detach()) if isinstance(v, Tensor) else float(v)

    def extra_repr(self) -> str:
        return f"v_threshold={self.threshold_value():g}, tau={self.tau:g}, record={self.record}"


class LearnableThresholdLIFNode(MultiStepLIFNode):
    """LIF neuron whose threshold is a learnable scalar ``nn.Parameter`` (SDSA-4).

    The threshold appears in the state dict as ``<prefix>.v_threshold`` (shape ``[]``).
    Its gradient comes through the surrogate: dS/dv_th = -dS/dH.
    """

    def __init__(self, v_threshold: float = 0.5, tau: float = 2.0, *, record: bool = False):
        super().__init__(v_threshold=v_threshold, tau=tau, record=record)
        del self.v_threshold  # replace the plain float attribute by a registered parameter
        self.v_threshold = nn.Parameter(torch.tensor(float(v_threshold)))


def iter_lif_nodes(module: nn.Module) -> Iterator[tuple[str, MultiStepLIFNode]]:
    """Yield ``(qualified_name, node)`` for every LIF node in ``module``, in registration order."""
    for name, sub in module.named_modules():
        if isinstance(sub, MultiStepLIFNode):
            yield name, sub


def set_record(module: nn.Module, enabled: bool = True) -> None:
    """Turn membrane/spike recording on or off for every LIF node in ``module``.

    Turning it off also drops the recorded tensors (they can be large).
    """
    for _, node in iter_lif_nodes(module):
        node.record = enabled
        if not enabled:
            node.last_membrane = None
            node.last_spikes = None

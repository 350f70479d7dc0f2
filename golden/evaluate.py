"""Float against integer on labelled images: what quantization costs, measured (``hwgen eval``).

For every image of a source the float model (the user's, in eval mode) and the integer engine
(the quantized program) classify the same picture: the float model its normalized input, the
engine the 8-bit pixels the chip receives (docs/arithmetic.md, "The chip's input"). Reported:
float and integer top-1 (and top-5 when there are more than 5 classes) where labels exist, how
often the two predictions agree, and per LIF layer the fraction of output spikes that are
identical between the float and the integer model.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from contract.program import Program
from contract.progress import NullProgress
from golden.images import ImageSource
from golden.intsim import IntegerEngine
from golden.neuron import iter_lif_nodes, set_record

__all__ = ["Evaluation", "evaluate"]


@dataclass
class Evaluation:
    """Counts over the images seen; ratios as properties (``None`` without labels)."""

    images: int = 0
    labelled: int = 0                  # images with a label (top-k counts are over these)
    classes: int = 0
    float_top1: int = 0                # correct predictions, float model and integer engine
    int_top1: int = 0
    float_top5: int = 0
    int_top5: int = 0
    agree: int = 0                     # images where both predict the same class
    spikes_same: dict[str, int] = field(default_factory=dict)
    spikes_total: dict[str, int] = field(default_factory=dict)

    def _ratio(self, n: int, of: int):
        return n / of if of else None

    def as_dict(self) -> dict:
        top5 = self.classes > 5
        return {
            "images": self.images, "labelled": self.labelled, "classes": self.classes,
            "float_top1": self._ratio(self.float_top1, self.labelled),
            "int_top1": self._ratio(self.int_top1, self.labelled),
            "float_top5": self._ratio(self.float_top5, self.labelled) if top5 else None,
            "int_top5": self._ratio(self.int_top5, self.labelled) if top5 else None,
            "agreement": self._ratio(self.agree, self.images),
            "spike_agreement": {k: self.spikes_same[k] / self.spikes_total[k] for k in self.spikes_same},
        }


def _topk(logits: torch.Tensor, labels: torch.Tensor, k: int) -> int:
    k = min(k, logits.shape[1])
    return int((logits.topk(k, dim=1).indices == labels[:, None]).any(1).sum())


@torch.no_grad()
def evaluate(program: Program, model: nn.Module, source: ImageSource, *, batch: int = 32,
             progress=None) -> Evaluation:
    """Run ``source`` through ``model`` and ``program``'s integer engine, ``batch`` images at a time;
    ``progress.advance(n)`` after each batch."""
    engine = IntegerEngine(program)
    lif_layers = {layer.name for layer in program.layers if layer.kind == "lif"}
    nodes = {name: node for name, node in iter_lif_nodes(model) if name in lif_layers}
    result = Evaluation(classes=int(program.header["classes"]))
    progress = progress or NullProgress()
    model.eval()
    set_record(model, True)
    try:
        for _, pixels, labels in source.batches(batch):
            float_logits = model(source.normalized(pixels))
            env = engine.run(pixels.to(torch.int64))
            int_logits = env[program.output].to(torch.float64)
            result.images += len(pixels)
            result.agree += int((float_logits.argmax(1) == int_logits.argmax(1)).sum())
            if labels is not None:
                result.labelled += len(labels)
                result.float_top1 += _topk(float_logits, labels, 1)
                result.int_top1 += _topk(int_logits, labels, 1)
                result.float_top5 += _topk(float_logits, labels, 5)
                result.int_top5 += _topk(int_logits, labels, 5)
            for name, node in nodes.items():
                ref = node.last_spikes
                got = env[name].reshape(ref.shape).to(ref.dtype)
                result.spikes_same[name] = result.spikes_same.get(name, 0) + int((got == ref).sum())
                result.spikes_total[name] = result.spikes_total.get(name, 0) + ref.numel()
            progress.advance(len(pixels))
    finally:
        set_record(model, False)
    return result

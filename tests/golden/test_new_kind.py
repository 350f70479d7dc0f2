"""A layer kind added the way docs/adding-a-layer-kind.md says, and nowhere else: a toy
``spike_or`` (the OR of two spike tensors of one shape) registered for the length of the test in
``contract.program.KINDS``, ``golden.kinds`` (a Kind and its folded step) and
``hwgen.compiler.kinds`` (a CoreKind). The quantizer's passes, the integer engine, ``replay``
and the core compiler then handle it without a change."""
from __future__ import annotations

import pytest
import torch

from contract.config import load_config
from contract.program import INPUT, KINDS, KindFormat, Layer
from golden import kinds as golden_kinds
from golden.export import replay
from golden.fold import ConvStep, FoldedModel, LIFStep, LinearStep, ReadoutStep, Step, TokenMeanStep
from golden.intsim import IntegerEngine
from golden.quantize import quantize
from hwgen.compiler import compile_program
from hwgen.compiler import kinds as core_kinds
from hwgen.core.isa import Op

HW = load_config("configs/hw/digits.yaml")


class SpikeOrStep(Step):
    kind = "spike_or"

    def forward(self, a, b):
        return torch.maximum(a, b)


class SpikeOr(golden_kinds.Kind):
    name, step, engine = "spike_or", SpikeOrStep, "_spike_or"

    def shape(self, g, s):
        return list(g.shapes[s.inputs[0]])

    def bound(self, g, s):
        return g.bounds[s.inputs[0]]

    def layer(self, g, s):
        return Layer(s.name, self.name, list(s.inputs), g.shapes[s.name])


class CoreSpikeOr(core_kinds.CoreKind):
    name, op, unit = "spike_or", Op.MASK, "vector"

    def instruction(self, c, layer):
        a, b = (c.tensor(n, layer) for n in layer.inputs)
        out = c.place(layer.name, self.memory, a.positions, a.channels, tuple(layer.shape))
        return dict(op=self.op, timesteps=c.T, a_base=a.base, b_base=b.base, dst_base=out.base, count=a.size)

    def traffic(self, layer, work, T, words, add):      # the mask engine: two spike words in, one out
        n = T * layer.shape[1] * layer.shape[2] * words(layer.shape[0])
        add("spikes", reads=2 * n, writes=n)


@pytest.fixture
def spike_or(monkeypatch):
    monkeypatch.setitem(KINDS, "spike_or", KindFormat("spikes"))
    monkeypatch.setitem(golden_kinds.GOLDEN_KINDS, "spike_or", SpikeOr())
    monkeypatch.setitem(golden_kinds._BY_STEP, SpikeOrStep, golden_kinds.GOLDEN_KINDS["spike_or"])
    monkeypatch.setattr(IntegerEngine, "_spike_or", lambda self, layer, a, b: a | b, raising=False)
    monkeypatch.setitem(core_kinds.CORE_KINDS, "spike_or", CoreSpikeOr())


def model() -> FoldedModel:
    """enc -> lif0 -> (ca -> lif_a, cb -> lif_b) -> spike_or -> c2 -> token mean -> head."""
    half = torch.full((8, 8, 1, 1), 0.5)
    steps = [ConvStep("enc", INPUT, torch.full((8, 1, 1, 1), 4.0), torch.zeros(8)),
             LIFStep("lif0", "enc", v_threshold=1.0),
             ConvStep("ca", "lif0", half, torch.zeros(8)), LIFStep("lif_a", "ca", v_threshold=1.0),
             ConvStep("cb", "lif0", -half, torch.full((8,), 4.0)), LIFStep("lif_b", "cb", v_threshold=1.0),
             SpikeOrStep("or", ["lif_a", "lif_b"]),
             ConvStep("c2", "or", half, torch.zeros(8)),
             TokenMeanStep("tm", "c2"), LIFStep("lif_h", "tm", v_threshold=1.0),
             LinearStep("head", "lif_h", torch.eye(8)[:4], torch.zeros(4)), ReadoutStep("logits", ["head"])]
    return FoldedModel(steps, T=2, output="logits")


def test_a_new_kind_needs_only_its_registry_entries(spike_or):
    program = quantize(model(), HW, input_scale=1 / 16, input_shape=[1, 2, 2])
    assert program.layer("or").kind == "spike_or" and program.layer("c2").attrs["input"] == "spikes"
    engine = IntegerEngine(program)
    # a pixel of 16/16 = 1.0 gives the encoding layer's channels a current of 4: they fire every
    # timestep (tau = 2: H = 4 / 2 >= 1). ca (8 x 0.5 = 4) fires where they do, cb (bias 4 minus
    # the same) where they do not: lif_a at three positions, lif_b at the fourth, the OR everywhere
    pixels = torch.tensor([[[[16, 16], [0, 16]]]])
    env = engine.run(pixels)
    fired = torch.tensor([[1, 1], [0, 1]], dtype=torch.int8).expand(2, 1, 8, 2, 2)
    assert torch.equal(env["lif_a"], fired) and torch.equal(env["lif_b"], 1 - fired)
    assert torch.equal(env["or"], torch.ones_like(fired))
    traces = {k: v.numpy() for k, v in env.items()}
    traces["input"] = traces["input"][0]
    assert replay(program, traces) == []
    image = compile_program(program, HW)
    pc = image.outputs.index("or")
    assert image.instructions[pc]["op"] == Op.MASK and image.regions["or"].memory == "spikes"
    assert image.instructions[pc]["a_base"] == image.regions["lif_a"].base
    # its performance hooks sit in the same class: the estimate's counting and the traffic model
    from hwgen.perf.energy import Work, datapath_work
    from hwgen.perf.memory import layer_traffic

    words = 2 * 2 * 2 * 1                   # T = 2, 2 x 2 positions, 8 channels in one 8-lane word
    assert layer_traffic(program.layer("or"), Work(), program.T, HW.lif.lanes, {}) == {
        "program": [1.0, 0.0], "spikes": [2.0 * words, 1.0 * words]}
    assert datapath_work(program.layer("or"), program.T, HW.lif.lanes) == Work()

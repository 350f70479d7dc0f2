"""hwgen/compiler/kinds.py: the hardware facts of every layer kind, checked against the program
format and against what docs/core.md and hwgen/sim/simulate.py say each unit does."""
import pytest

from contract.program import KINDS, Layer
from hwgen.compiler.kinds import CORE_KINDS, UNITS, CoreKind, core_kind
from hwgen.core.isa import Op
from hwgen.report import UNIT_COLOURS


def test_core_registry_covers_the_format():
    assert list(CORE_KINDS) == list(KINDS)
    assert UNITS == ("accumulator", "lif", "sdsa", "vector") and set(UNITS) == set(UNIT_COLOURS)


@pytest.mark.parametrize("name", list(CORE_KINDS))
def test_every_kind_has_an_instruction_a_unit_and_a_memory(name):
    kind = core_kind(name)
    assert kind.name == name and kind.op in set(Op) - {Op.END} and kind.unit in UNITS
    # spikes go to the spike memory, everything else is an integer tensor
    assert kind.memory == {"spikes": "spikes", "ints": "ints"}[KINDS[name].output]
    assert type(kind).instruction is not CoreKind.instruction       # it builds its own instruction


def test_cycle_bounds_follow_the_units():
    # the accumulator array and the SDSA unit do `lanes` additions a cycle: ceil(17 / 8) = 3
    for name in ("conv", "linear", "sdsa"):
        assert core_kind(name).cycle_bound({}, 17, 8) == 3, name
    # the LIF core and the mask engine stream one word a cycle, `count` words
    for name in ("lif", "mask"):
        assert core_kind(name).cycle_bound({"count": 12}, 0, 8) == 12, name
    # the reduce engine reads outer x count x in_words words
    for name in ("token_sum", "readout"):
        assert core_kind(name).cycle_bound({"outer": 2, "count": 4, "in_words": 3}, 0, 8) == 24, name


def test_spike_inputs():
    def layer(kind, inputs, **attrs):
        return Layer("x", kind, inputs, [1], attrs=attrs)

    assert core_kind("conv").spike_inputs(layer("conv", ["input"], input="pixels")) == ()
    assert core_kind("conv").spike_inputs(layer("conv", ["s", "r"], input="spikes")) == (0,)   # not the residual
    assert core_kind("sdsa").spike_inputs(layer("sdsa", ["q", "v"])) == (0, 1)                 # SDSA-2: no K
    assert core_kind("sdsa").spike_inputs(layer("sdsa", ["q", "k", "v"])) == (0, 1, 2)
    assert core_kind("mask").spike_inputs(layer("mask", ["m", "v"])) == (1,)
    assert core_kind("lif").spike_inputs(layer("lif", ["c"])) == ()


def test_accumulator_geometry_of_a_linear_layer_is_a_1x1_conv():
    g = core_kind("linear").geometry(Layer("h", "linear", ["s"], [10], attrs=dict(in_features=48, out_features=10)))
    assert (g.c_in, g.c_out, g.h, g.w, g.kernel) == (48, 10, 1, 1, 1)


def test_unknown_kind_is_named():
    with pytest.raises(ValueError, match="unknown layer kind 'pool'"):
        core_kind("pool")

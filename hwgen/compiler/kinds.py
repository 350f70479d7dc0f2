"""The layer kinds on the hardware side: one class per kind, holding what the core does with it.

This is the only place in ``hwgen`` that enumerates kinds (:data:`CORE_KINDS`, keyed by the
names of ``contract.program.KINDS``, which also says whether a kind's output lives in the spike
or the int memory; the golden side of the same kinds is ``golden.kinds``). Per kind:

===================  ==========================================================================
``op``, ``unit``     the core instruction (``hwgen.core.isa.Op``) and the part of the core that
                     runs it: ``accumulator``, ``lif``, ``sdsa`` or ``vector`` (the mask and
                     reduce engines); the report colours layers by unit
``instruction``      the instruction's fields, placing the output tensor and checking that the
                     configured core can run the layer (``hwgen.compiler.image``)
``parameters``       the parameter memories it reads; ``geometry``, ``weights`` and ``pixels``
                     for the accumulator array's layers (``hwgen.compiler.placement``)
``cycle_bound``      the fewest cycles its unit could take for the work it did (``hwgen sim``)
``spike_inputs``     which inputs are spike tensors (the input firing rate in the report)
``heads``, ``pad``   attention heads padded to whole words (``hwgen.compiler.padding``)
``spike_roles``,     performance (``hwgen.perf``, ``hwgen estimate``): the spike tensors a rate
``paper_flops``,     table must give, the paper's FLOPs and counting, the datapath's work (exact
``paper_work``,      from tensors or expected from rates), the estimate's cycle bound, and the
``datapath_work``,   words read and written per memory (the model the core's traffic counters
``estimate_bound``,  are held to)
``traffic``
===================  ==========================================================================

docs/core.md describes the instructions and engines; docs/adding-a-layer-kind.md what a new
kind needs.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from contract.program import INPUT, KINDS, Layer, check_registry
from hwgen.core.isa import Op
from hwgen.layout import ConvGeometry
from hwgen.perf import energy as perf
from hwgen.perf.energy import Work
from hwgen.units.sdsa_stages import input_fields

if TYPE_CHECKING:
    from hwgen.compiler.image import Compilation
    from hwgen.compiler.padding import Padder

__all__ = ["CoreKind", "CORE_KINDS", "UNITS", "core_kind"]


class CoreKind:
    """One layer kind on the core (see the module docstring). The defaults say "this kind does
    not do that"."""

    name: str = ""
    op: Op = Op.END
    unit: str = ""
    parameters: tuple[str, ...] = ()      # parameter memories: "weights", "biases", "thresholds"
    channelwise: bool = False             # output channel c is a function of input channel c only
    zero_rows: bool = False               # can give itself zero output channels (weight rows)

    @property
    def memory(self) -> str:
        """Where its output lives: ``"spikes"`` or ``"ints"``."""
        return "spikes" if KINDS[self.name].output == "spikes" else "ints"

    @property
    def per_timestep(self) -> bool:
        return KINDS[self.name].per_timestep

    def instruction(self, c: Compilation, layer: Layer) -> dict:
        raise NotImplementedError

    def arrange(self, c: Compilation, layer: Layer) -> None:
        """Before any instruction is built: ask for a tensor arrangement the instruction needs
        (``c.adjacent``)."""

    def cycle_bound(self, fields: dict, additions: int, lanes: int) -> int:
        """Words the engine streams, one a cycle (the vector engines)."""
        return fields["outer"] * fields["count"] * fields["in_words"]

    def spike_inputs(self, layer: Layer) -> tuple[int, ...]:
        return ()

    # ---- performance (hwgen.perf, docs/energy.md) ------------------------------------------
    def spike_roles(self, layer: Layer) -> dict[str, str]:
        """The spike tensors it consumes, role -> tensor name (``hwgen.perf.rates``: the rates a
        rate table must give)."""
        return {}

    def paper_flops(self, layer: Layer) -> dict[str, float]:
        """Dense operations per timestep by the paper's formulas, by spike role (none: not counted)."""
        return {}

    def paper_work(self, layer: Layer, rates, T: int, lanes: int) -> Work:
        """Its work in the paper's counting (``hwgen.perf.energy.paper_work``)."""
        return Work()

    def datapath_work(self, layer: Layer, T: int, lanes: int, c: perf.Counting) -> Work:
        """The work its unit does (``hwgen.perf.energy.datapath_work``), exact from ``c.tensors``
        or expected from ``c.rates``."""
        return Work()

    def estimate_bound(self, layer: Layer, work: Work, T: int, words) -> float:
        """The fewest cycles its unit could take for ``work`` (``hwgen estimate``): the words it
        streams, one a cycle, by default those of its output."""
        return float(T * _positions(layer) * words(layer.shape[0]))

    def traffic(self, layer: Layer, work: Work, T: int, words, add) -> None:
        """The words its instruction reads and writes besides its fetch: ``add(memory, reads=,
        writes=)`` per memory, for ``work`` over ``T`` timesteps; ``words(channels)``: memory
        words of that many channels (``hwgen.perf.memory.layer_traffic``: with the exact work of
        an image, exactly what the core's traffic counters report)."""
        raise NotImplementedError(f"{self.name}: no traffic model")

    def pixels(self, layer: Layer) -> bool:
        """Reads the image (pixel bit planes), not spikes."""
        return False

    def heads(self, layer: Layer) -> tuple[int, int, tuple[str, ...]] | None:
        """(heads, head dimension, the tensors laid out by head) of an attention layer."""
        return None

    def pad(self, p: Padder, layer: Layer, out_map, padded_inputs: list[str]) -> None:
        """Rewrite ``layer`` (a copy) for head padding: ``out_map`` when its output is padded,
        ``padded_inputs`` the padded tensors it reads."""
        if padded_inputs:
            p.refuse(f"{layer.name} ({layer.kind}): reads the padded {padded_inputs[0]}")


def _positions(layer: Layer) -> int:
    """Positions of the layer's output per timestep (1 for a vector)."""
    shape = layer.shape
    return int(np.prod(shape[1:])) if len(shape) > 1 else 1


def _additions_bound(fields: dict, additions: int, lanes: int) -> int:
    return math.ceil(additions / lanes)       # lanes additions a cycle


class _Accumulate(CoreKind):
    """Runs on the accumulator array: spike (or pixel) events add weight words into
    accumulators, drained with the bias (and the residual) into the int memory."""

    op, unit, parameters = Op.CONV, "accumulator", ("weights", "biases")

    def geometry(self, layer: Layer) -> ConvGeometry:
        raise NotImplementedError

    def weights(self, weight: np.ndarray) -> np.ndarray:
        """The layer's weights as ``[C_out, C_in / groups, k, k]``."""
        return weight

    def cycle_bound(self, fields, additions, lanes):
        return _additions_bound(fields, additions, lanes)

    def spike_inputs(self, layer):
        return () if self.pixels(layer) else (0,)

    def spike_roles(self, layer):
        # the image is pixels unless the layer says it reads spike frames
        pixels = layer.attrs.get("input", "pixels" if layer.inputs[0] == INPUT else "spikes") == "pixels"
        return {} if pixels else {"input": layer.inputs[0]}

    def paper_flops(self, layer):
        g = self.geometry(layer)
        return {"input": float(g.kernel ** 2 * g.out_h * g.out_w * g.cg_in * g.c_out)}

    def paper_work(self, layer, rates, T, lanes):
        return perf.accumulate_paper_work(layer, self.geometry(layer), self.pixels(layer),
                                          self.paper_flops(layer)["input"], rates, lanes)

    def datapath_work(self, layer, T, lanes, c):
        return perf.accumulate_datapath_work(layer, self.geometry(layer), self.pixels(layer), T, lanes, c)

    def estimate_bound(self, layer, work, T, words):
        return float(words(work.additions))            # lanes additions a cycle

    def traffic(self, layer, work, T, words, add):
        geo = self.geometry(layer)
        D = geo.out_h * geo.out_w * geo.groups * words(geo.cg_out)       # accumulator words walked
        pixels = self.pixels(layer)
        add("pixels" if pixels else "spikes", reads=T * geo.h * geo.w * (geo.c_in if pixels else words(geo.c_in)))
        add("weights", reads=work.weight_words)
        # each timestep's drain reads the D words with their biases and writes them back zero
        add("accumulators", reads=work.weight_words + T * D, writes=work.weight_words + T * D)
        add("biases", reads=T * D)
        residual = bool(layer.attrs.get("residual")) or "border" in layer.arrays
        add("ints", reads=T * D if residual else 0, writes=T * D)

    def _fields(self, c: Compilation, layer: Layer, c_in: int, h: int, w: int, residual: str | None) -> dict:
        acc, core = c.hw.accumulator, c.hw.core
        d = c.placed(layer).descriptor
        pixels = self.pixels(layer)
        c.need(c_in <= acc.max_channels, layer, f"{c_in} input channels > accumulator.max_channels {acc.max_channels}")
        c.need(d["drain_words"] <= acc.accumulator_depth, layer,
               f"needs {d['drain_words']} accumulator words, the array has {acc.accumulator_depth}")
        if pixels:
            c.need(layer.inputs[0] == INPUT, layer, "pixel input must be the image")
            c.need(c_in * h * w <= core.pixel_depth, layer,
                   f"the image has {c_in * h * w} pixels, core.pixel_depth is {core.pixel_depth}")
            src_base, src_step, in_words = 0, 0, c_in       # the image is the same every timestep
        else:
            src = c.tensor(layer.inputs[0], layer)
            src_base, src_step, in_words = src.base, src.step, src.words
        res = c.tensor(residual, layer) if residual else None
        border = None
        if "border" in layer.arrays:       # the encoding conv's border correction: a constant residual
            c.need(res is None, layer, "a border correction and a membrane shortcut in one conv")
            border = c.constant(f"{layer.name}.border", c.array(layer, "border"))
        out_shape = tuple(layer.shape)
        positions = int(np.prod(out_shape[1:])) if len(out_shape) > 1 else 1
        out = c.place(layer.name, self.memory, positions, out_shape[0], out_shape)
        if res is not None:
            c.need(res.step == out.step, layer, "residual and output differ in shape")
        fields = dict(op=Op.CONV, timesteps=c.T, a_base=src_base, a_step=src_step, in_h=h, in_w=w,
                      in_words=in_words, pixels=int(pixels), dst_base=out.base, dst_step=out.step, desc=d)
        if res is not None:
            fields.update(residual=1, b_base=res.base, b_step=res.step)
        if border is not None:           # the same words at every timestep: step 0
            fields.update(residual=1, b_base=border.base, b_step=0)
        return fields


class Conv(_Accumulate):
    name, zero_rows = "conv", True

    def geometry(self, layer):
        a = layer.attrs
        _, h, w = a["in_shape"]
        return ConvGeometry(a["in_channels"], a["out_channels"], h, w, a["kernel"], a["stride"], a["padding"],
                            a["groups"])

    def pixels(self, layer):
        return layer.attrs["input"] == "pixels"

    def instruction(self, c, layer):
        a, acc = layer.attrs, c.hw.accumulator
        c_in, h, w = a["in_shape"]
        c.need(c.placed(layer).descriptor["words"] == c.words(a["out_channels"]), layer,
               f"grouped conv with {a['out_channels'] // a['groups']} output channels per group: the core "
               f"needs them in multiples of lanes ({c.lanes})")
        c.need(a["kernel"] <= acc.max_kernel, layer, f"kernel {a['kernel']} > accumulator.max_kernel {acc.max_kernel}")
        c.need(max(h, w) <= acc.max_size, layer, f"input {h}x{w} > accumulator.max_size {acc.max_size}")
        return self._fields(c, layer, c_in, h, w, a.get("residual"))

    def pad(self, p, layer, out_map, padded_inputs):
        a = layer.attrs
        if out_map is not None:      # zero weight rows and biases on the padding channels
            p.put(layer, "weight", p.pad_rows(p.array(layer, "weight"), out_map, p.width(layer.name)))
            p.put(layer, "bias", p.pad_rows(p.array(layer, "bias"), out_map, p.width(layer.name)))
            a["out_channels"] = p.width(layer.name)
        if padded_inputs:            # zero weight columns for the padding input channels
            src = layer.inputs[0]
            other = [n for n in padded_inputs if n != src]
            if other or a["groups"] != 1:
                p.refuse(f"{layer.name}: reads the padded {(other or [src])[0]} other than as the "
                         "spike input of a dense conv")
            w = p.current(layer, "weight")
            cols = np.zeros((w.shape[0], p.width(src), *w.shape[2:]), dtype=w.dtype)
            cols[:, p.maps[src]] = w
            p.put(layer, "weight", cols)
            a["in_channels"] = p.width(src)
            a["in_shape"] = [p.width(src), *a["in_shape"][1:]]


class Linear(_Accumulate):
    """A linear layer is a 1x1 conv on one position."""

    name = "linear"

    def geometry(self, layer):
        a = layer.attrs
        return ConvGeometry(a["in_features"], a["out_features"], 1, 1)

    def weights(self, weight):
        return weight[:, :, None, None]

    def instruction(self, c, layer):
        return self._fields(c, layer, layer.attrs["in_features"], 1, 1, None)


class Lif(CoreKind):
    """The LIF core: currents from the int memory, spikes to the spike memory."""

    name, op, unit, parameters, channelwise = "lif", Op.LIF, "lif", ("thresholds",), True

    def instruction(self, c, layer):
        lif = c.hw.lif
        src = c.tensor(layer.inputs[0], layer)
        beats = src.step
        c.need(beats <= lif.beats, layer, f"{beats * c.lanes} neurons, the LIF core holds {lif.neurons} (lif.neurons)")
        # channels past C in the last word of a position: zero currents, the largest
        # threshold (hwgen.compiler.placement pads them), so they never fire and stay zero downstream
        out = c.place(layer.name, self.memory, src.positions, layer.attrs["channels"], tuple(layer.shape))
        return dict(op=Op.LIF, timesteps=c.T, a_base=src.base, dst_base=out.base, beats=beats,
                    count=c.T * beats, thr_base=c.placed(layer).threshold_offset, thr_rows=src.words,
                    input_shift=layer.attrs["input_shift"])

    def cycle_bound(self, fields, additions, lanes):
        return fields["count"]

    def datapath_work(self, layer, T, lanes, c):
        return Work(neuron_updates=T * _positions(layer) * math.ceil(layer.shape[0] / lanes) * lanes)

    def traffic(self, layer, work, T, words, add):
        beats = T * _positions(layer) * words(layer.shape[0])
        add("ints", reads=0 if work.chained else beats)
        add("spikes", writes=beats)
        add("membranes", reads=beats, writes=beats)
        add("thresholds", reads=beats)

    def pad(self, p, layer, out_map, padded_inputs):
        if out_map is None:
            return super().pad(p, layer, out_map, padded_inputs)
        # padding neurons get the largest threshold: with a zero current they never fire
        p.put(layer, "threshold", p.pad_rows(p.array(layer, "threshold"), out_map, p.width(layer.name),
                                             fill=p.threshold_max))
        layer.attrs["channels"] = p.width(layer.name)


class Sdsa(CoreKind):
    """The SDSA unit: q, k, v spikes (a token beat a word at a time) to attention integers."""

    name, op, unit = "sdsa", Op.SDSA, "sdsa"

    def instruction(self, c, layer):
        a, sdsa, L = layer.attrs, c.hw.sdsa, c.lanes
        q, k, v = (c.tensor(a[f], layer) if a.get(f) else None for f in ("q", "k", "v"))
        heads, d, n = a["heads"], a["head_dim"], a["tokens"]
        c.need(a["variant"] == sdsa.variant, layer, f"SDSA-{a['variant']}, the core has SDSA-{sdsa.variant}")
        c.need(d % L == 0, layer, f"head dimension {d}: the core needs a multiple of lanes ({L})")
        c.need(heads <= sdsa.heads and d <= sdsa.head_dim and n <= sdsa.max_tokens, layer,
               f"{heads} heads of {d} over {n} tokens exceed the SDSA unit ({sdsa.heads} x {sdsa.head_dim}, "
               f"{sdsa.max_tokens} tokens)")
        positions = n if sdsa.attention_matrix else 1
        out = c.place(layer.name, self.memory, positions, heads * d, tuple(layer.shape))
        return dict(op=Op.SDSA, timesteps=c.T, a_base=q.base, a_step=q.step,
                    b_base=k.base if k else 0, c_base=v.base if v else 0, dst_base=out.base,
                    dst_step=out.step, tokens=n, heads=heads, head_dim=d, head_words=d // L,
                    in_words=q.words)

    def cycle_bound(self, fields, additions, lanes):
        return _additions_bound(fields, additions, lanes)

    def spike_inputs(self, layer):
        return tuple(range(len(layer.inputs)))

    def spike_roles(self, layer):
        a = layer.attrs
        return {role: a[role] for role in ("q", "k", "v") if a.get(role)}

    def paper_flops(self, layer):
        a = layer.attrs
        if a["variant"] not in (3, 4):
            return {}
        n_d_c = float(a["tokens"] * a["head_dim"] * a["heads"] * a["head_dim"])
        return {"k": n_d_c, "q": n_d_c}

    def paper_work(self, layer, rates, T, lanes):
        return perf.sdsa_paper_work(layer, self.paper_flops(layer), rates, lanes)

    def datapath_work(self, layer, T, lanes, c):
        return perf.sdsa_datapath_work(layer, T, lanes, c)

    def estimate_bound(self, layer, work, T, words):
        return float(words(work.additions))

    def traffic(self, layer, work, T, words, add):
        a = layer.attrs
        passes = 2 if a["variant"] in (3, 4) else 1
        fields = len(input_fields(a["variant"]))                    # words read per token word
        add("spikes", reads=T * passes * a["tokens"] * words(a["heads"] * a["head_dim"]) * fields)
        add("kv", reads=work.kv_updates + work.kv_reads, writes=work.kv_updates)
        add("ints", writes=T * _positions(layer) * words(layer.shape[0]))

    def heads(self, layer):
        a = layer.attrs
        return a["heads"], a["head_dim"], tuple(n for n in (a["q"], a["k"], a["v"], layer.name) if n)

    def pad(self, p, layer, out_map, padded_inputs):
        if out_map is None:
            return super().pad(p, layer, out_map, padded_inputs)
        # a padding channel of K or V is never 1: it adds nothing to K^T V
        layer.attrs["head_dim"] = p.width(layer.name) // layer.attrs["heads"]


class Mask(CoreKind):
    """The mask engine: ``v AND mask`` (SDSA-1/2), spikes to spikes."""

    name, op, unit, channelwise = "mask", Op.MASK, "vector", True

    def instruction(self, c, layer):
        mask, v = (c.tensor(n, layer) for n in layer.inputs)
        out = c.place(layer.name, self.memory, v.positions, v.channels, tuple(layer.shape))
        return dict(op=Op.MASK, timesteps=c.T, a_base=v.base, b_base=mask.base, b_step=mask.step,
                    dst_base=out.base, tokens=v.positions, in_words=v.words, count=v.size)

    def cycle_bound(self, fields, additions, lanes):
        return fields["count"]

    def spike_inputs(self, layer):
        return (1,)

    def spike_roles(self, layer):
        a = layer.attrs
        return {"mask": a.get("mask", layer.inputs[0]), "v": a.get("v", layer.inputs[1])}

    def traffic(self, layer, work, T, words, add):
        n = T * _positions(layer) * words(layer.shape[0])
        add("spikes", reads=2 * n, writes=n)

    def pad(self, p, layer, out_map, padded_inputs):
        if out_map is None:
            return super().pad(p, layer, out_map, padded_inputs)
        # padded mask and v: the padding channels stay zero, nothing to rewrite


class TokenSum(CoreKind):
    """The reduce engine: a tensor summed over its positions, per timestep."""

    name, op, unit = "token_sum", Op.REDUCE, "vector"

    def instruction(self, c, layer):
        src = c.tensor(layer.inputs[0], layer)
        out = c.place(layer.name, self.memory, 1, src.channels, tuple(layer.shape))
        return dict(op=Op.REDUCE, a_base=src.base, a_step=src.step, outer=c.T, count=src.positions,
                    in_stride=src.words, in_words=src.words, dst_base=out.base)

    def datapath_work(self, layer, T, lanes, c):
        return Work(vector_adds=T * layer.attrs["tokens"] * math.ceil(layer.shape[0] / lanes) * lanes)

    def estimate_bound(self, layer, work, T, words):
        return float(T * layer.attrs["tokens"] * words(layer.shape[0]))

    def traffic(self, layer, work, T, words, add):
        w = words(layer.shape[0])
        add("ints", reads=T * layer.attrs["tokens"] * w, writes=T * w)


class Readout(CoreKind):
    """The reduce engine: the head(s) summed over the timesteps. Several heads (the distillation
    head) are stored back to back, so one pass sums ``heads x T`` blocks."""

    name, op, unit = "readout", Op.REDUCE, "vector"

    def arrange(self, c, layer):
        if len(layer.inputs) > 1:
            c.adjacent(layer.inputs)

    def instruction(self, c, layer):
        heads = [c.tensor(n, layer) for n in layer.inputs]
        src = heads[0]
        for k, (name, r) in enumerate(zip(layer.inputs[1:], heads[1:]), 1):
            c.need(r.step == src.step and r.base == src.base + k * src.size, layer,
                   f"head {name} is not stored right after {layer.inputs[k - 1]} (a slice that starts between "
                   "the heads?)")
        out = c.place(layer.name, self.memory, 1, src.channels, tuple(layer.shape),
                      timesteps=c.T if self.per_timestep else 1)
        return dict(op=Op.REDUCE, a_base=src.base, a_step=0, outer=1, count=c.T * len(heads), in_stride=src.step,
                    in_words=src.words, dst_base=out.base)

    def datapath_work(self, layer, T, lanes, c):
        return Work(vector_adds=T * len(layer.inputs) * math.ceil(layer.shape[0] / lanes) * lanes)

    def estimate_bound(self, layer, work, T, words):
        return float(T * len(layer.inputs) * words(layer.shape[0]))

    def traffic(self, layer, work, T, words, add):
        w = words(layer.shape[0])
        add("ints", reads=T * len(layer.inputs) * w, writes=w)


#: program kind -> what the core does with it, in the order of contract.program.KINDS
CORE_KINDS: dict[str, CoreKind] = {k.name: k for k in (Conv(), Lif(), Sdsa(), Mask(), TokenSum(), Linear(), Readout())}
check_registry("hwgen.compiler.kinds.CORE_KINDS", CORE_KINDS)
#: the units, in the order the report lists them
UNITS: tuple[str, ...] = tuple(dict.fromkeys(k.unit for k in CORE_KINDS.values()))


def core_kind(name: str) -> CoreKind:
    try:
        return CORE_KINDS[name]
    except KeyError:
        raise ValueError(f"unknown layer kind {name!r}: one of {', '.join(CORE_KINDS)}") from None

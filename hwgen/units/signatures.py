"""Interfaces the units, their stages and the core's engines share: declared once, here.

* :class:`RunControl`: ``start`` / ``busy`` / ``done``, the one way a job is started and ends.
* :class:`Counters`: performance counters, all :data:`~contract.config.COUNTER_WIDTH` bits, and
  :class:`CounterBank`, the registers behind them; :func:`accesses_layout`, a unit's memory
  accesses of one cycle (what the core's traffic counters count).
* :func:`sums_layout`, :func:`currents_layout`: the payloads of the accumulator array's output
  and the LIF core's input (the core's engines carry the same words).
* :func:`read_port`, :func:`write_port`, :func:`memory_write`: memory ports as ``lib.memory``
  declares them, seen from the side that drives them (or, for ``memory_write``, from a unit that
  is written like a memory).
"""
from __future__ import annotations

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from contract.config import COUNTER_WIDTH, AccumulatorConfig, LifConfig

__all__ = ["RunControl", "Counters", "CounterBank", "accesses_layout", "sums_layout", "currents_layout", "read_port",
           "write_port", "memory_write", "addr_width", "memory_words", "COUNTER_WIDTH"]


class RunControl(wiring.Signature):
    """Run control, from the controller's side: ``start`` (out) a one-cycle pulse that begins a
    job with the run-time registers stable; ``busy`` (in) high while the job is in flight;
    ``done`` (in) one pulse when it ends. A component that runs jobs declares
    ``"run": In(RunControl())``; each states in its docstring the cycle ``done`` pulses in."""

    def __init__(self):
        super().__init__({"start": Out(1), "busy": In(1), "done": In(1)})


class Counters(wiring.Signature):
    """Performance counters, ``COUNTER_WIDTH`` bits each, from the counting unit's side (all out).
    ``names`` fixes the members and their order."""

    def __init__(self, names):
        names = tuple(names)
        if not names or len(set(names)) != len(names):
            raise ValueError(f"counter names must be distinct and at least one, not {names!r}")
        self._names = names
        super().__init__({name: Out(COUNTER_WIDTH) for name in names})

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    def __eq__(self, other):
        return type(self) is type(other) and self._names == other._names

    def __repr__(self):
        return f"Counters({self._names!r})"


class CounterBank(wiring.Component):
    """The registers behind a :class:`Counters` port.

    Ports
    -----
    clear : In(1)
        Every counter becomes 0 on the next edge (it wins over ``step``).
    step : In(struct)
        Per counter, what to add this cycle (0 most cycles); field widths from ``steps``.
    counters : Out(Counters)
        The registers. They wrap at ``COUNTER_WIDTH`` bits.
    """

    def __init__(self, steps: dict[str, int]):
        """``steps``: counter name -> the largest amount one cycle may add."""
        for name, top in steps.items():
            if not isinstance(top, int) or top < 1:
                raise ValueError(f"largest step of counter {name} must be a positive integer, not {top!r}")
        self._steps = dict(steps)
        super().__init__({
            "clear": In(1),
            "step": In(data.StructLayout({name: range(top + 1) for name, top in steps.items()})),
            "counters": Out(Counters(steps)),
        })

    def elaborate(self, platform):
        m = Module()
        for name in self._steps:
            reg = Signal(COUNTER_WIDTH, name=f"count_{name}")
            m.d.comb += getattr(self.counters, name).eq(reg)
            m.d.sync += reg.eq(Mux(self.clear, 0, reg + getattr(self.step, name)))
        return m


def accesses_layout(names, most: dict[str, int] | None = None) -> data.StructLayout:
    """A unit's memory accesses in one cycle: per ``<memory>_read`` / ``<memory>_write`` name the
    number of words accessed, 1 in a cycle in which that memory port's enable is asserted (for a
    memory split into one macro per lane, any lane's), up to ``most[name]`` (default 1) where the
    unit has that many ports of the memory (double-buffered accumulators). A unit that owns
    memories drives such a signal as its ``accesses`` attribute (an observation output, not a port
    of its signature: the enclosing core counts it per instruction, ``hwgen.core.top.TRAFFIC_COUNTERS``)."""
    most = most or {}
    return data.StructLayout({name: range(most.get(name, 1) + 1) for name in names})


def sums_layout(cfg: AccumulatorConfig) -> data.StructLayout:
    """One drained accumulator word: ``lanes`` signed accumulators and ``last`` (the layer's
    final word of the timestep)."""
    return data.StructLayout({"data": data.ArrayLayout(signed(cfg.accumulator_width), cfg.lanes), "last": 1})


def currents_layout(cfg: LifConfig) -> data.ArrayLayout:
    """One beat of LIF input: ``lanes`` signed currents."""
    return data.ArrayLayout(signed(cfg.current_width), cfg.lanes)


def memory_words(depth: int) -> int:
    """Words to generate for a memory that must hold ``depth``: at least 2, because a one-word
    memory would have a 0-bit address, which Verilog cannot declare (the extra word is unused)."""
    return max(2, depth)


def addr_width(depth: int) -> int:
    """Address bits of a memory of ``depth`` words (of ``memory_words(depth)`` generated)."""
    return (memory_words(depth) - 1).bit_length()


def read_port(addr_width: int, shape) -> wiring.Member:
    """A member through which the component reads a synchronous memory: it drives ``addr`` and
    ``en``; ``data`` arrives the cycle after and holds while ``en`` is low."""
    return In(memory.ReadPort.Signature(addr_width=addr_width, shape=shape))


def write_port(addr_width: int, shape) -> wiring.Member:
    """A member through which the component writes a memory (``en``, ``addr``, ``data``)."""
    return In(memory.WritePort.Signature(addr_width=addr_width, shape=shape))


def memory_write(addr_width: int, shape) -> wiring.Member:
    """A member through which the component is written like a memory (its loads)."""
    return Out(memory.WritePort.Signature(addr_width=addr_width, shape=shape))

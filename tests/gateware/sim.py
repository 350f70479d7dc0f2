"""A small kit for ``amaranth.sim`` tests of single stages (in the manner of Glasgow's
``gateware/stream.py`` helpers): stream put / get, a synchronous memory model, and a runner.

Every helper is an async function taking the testbench context ``ctx``; values are plain
integers or field dictionaries. No Verilator: a stage test runs in milliseconds.
"""
from __future__ import annotations

from amaranth import Value
from amaranth.lib import data
from amaranth.sim import Simulator

__all__ = ["simulate", "stream_put", "stream_get", "stream_assert", "MemoryModel", "as_int"]


def simulate(dut, *benches, processes=(), deadline_cycles: int = 100_000) -> None:
    """Run ``dut`` with a clock and the given async testbenches; fail after ``deadline_cycles``."""
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    finished = []

    def tracked(bench):
        async def run(ctx):
            await bench(ctx)
            finished.append(bench)
        return run

    for bench in benches:
        sim.add_testbench(tracked(bench))
    for proc in processes:
        sim.add_process(proc)
    # until every testbench has finished (memory models and monitors are background), or the
    # deadline: a stage that never answers fails the test instead of hanging it
    deadline_fs = round(deadline_cycles * 1e-6 * 1e15)
    while sim.advance() and sim._engine.now < deadline_fs:
        pass
    late = [b.__name__ for b in benches if b not in finished]
    if late:
        raise AssertionError(f"{', '.join(late)} did not finish in {deadline_cycles} cycles")


def as_int(ctx, value) -> int:
    return ctx.get(Value.cast(value))


def _set_payload(ctx, port, payload) -> None:
    if isinstance(payload, dict):
        for name, v in payload.items():
            _set_payload(ctx, getattr(port, name), v)
    elif isinstance(payload, (list, tuple)):
        for i, v in enumerate(payload):
            _set_payload(ctx, port[i], v)
    else:
        ctx.set(port if not isinstance(port, data.View) else port.as_value(), payload)


async def stream_put(ctx, stream, payload) -> None:
    """Offer one beat and hold it (stream rule) until the stage takes it."""
    ctx.set(stream.valid, 1)
    _set_payload(ctx, stream.payload, payload)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def stream_get(ctx, stream, *, ready=True):
    """Wait for a beat and take it; returns the payload (a View's value as an int, or the
    settled payload object for field access before the edge)."""
    ctx.set(stream.ready, 1)
    payload, = await ctx.tick().sample(stream.payload).until(stream.valid)
    ctx.set(stream.ready, 0)
    return payload


async def stream_assert(ctx, stream, expected: dict) -> None:
    payload = await stream_get(ctx, stream)
    for name, value in expected.items():
        got = getattr(payload, name)
        got = got.as_value().value if hasattr(got, "as_value") else int(got)
        assert got == value, f"{name} = {got}, expected {value}"


class MemoryModel:
    """A synchronous memory behind a read port interface (``addr``, ``en`` in, ``data`` out):
    ``data`` is the word addressed in the cycle before ``en`` was high, held while ``en`` is low,
    as ``lib.memory`` read ports behave. Run :meth:`process` as a simulator process."""

    def __init__(self, port, words: dict[int, int] | list[int], *, default: int = 0):
        self.port = port
        self.words = dict(enumerate(words)) if isinstance(words, list) else dict(words)
        self.default = default
        self.reads = []

    async def process(self, ctx):
        data_v = Value.cast(self.port.data)
        async for clk_edge, _rst, en, addr in ctx.tick().sample(self.port.en, self.port.addr):
            if en:
                self.reads.append(addr)
                ctx.set(data_v, self.words.get(addr, self.default))

"""LIF neuron core: N neurons time-multiplexed over L lanes, membranes kept on chip.

Arithmetic is docs/arithmetic.md, section "LIF"; ``golden.lif.lif_integer`` is its reference.

Neuron order is position-major with channels padded to a multiple of lanes: beat ``b`` of a
timestep carries neurons ``b*L .. b*L+L-1``, and lane ``l`` of that beat uses the threshold of
channel ``(b mod R)*L + l`` where ``R = thr_rows`` (so neuron ``n`` has channel ``n mod C``).
"""
from __future__ import annotations

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from contract.config import LifConfig
from hwgen.units.signatures import RunControl, accesses_layout, addr_width, currents_layout, memory_words, memory_write

__all__ = ["LifCore", "lif_output_layout", "ACCESSES"]

#: the LIF core's memory accesses (its ``accesses`` attribute): per accepted beat a membrane and a
#: threshold word read, per output beat a membrane word written back
ACCESSES = ("membranes_read", "membranes_write", "thresholds_read")


def lif_output_layout(cfg: LifConfig) -> data.StructLayout:
    """Payload of the spike stream: one spike bit and one pre-reset membrane per lane."""
    return data.StructLayout({
        "spikes": unsigned(cfg.lanes),
        "membranes": data.ArrayLayout(signed(cfg.membrane_width), cfg.lanes),
    })


class LifCore(wiring.Component):
    """Time-multiplexed LIF neurons with per-channel thresholds.

    Ports
    -----
    currents : In(stream)
        ``lanes`` signed ``current_width`` currents per beat, one beat per L neurons, neurons in
        order, timestep after timestep. Accepted only while a run is active.
    spikes : Out(stream)
        ``{spikes, membranes}`` for the same L neurons, in the same order. ``membranes`` is the
        pre-reset membrane H (``frac_bits`` fractional bits).
    thr_write : memory_write
        ``en``, ``addr`` (threshold row), ``data`` (``lanes`` unsigned thresholds). Write while idle.
        The memory holds ``threshold_depth`` rows: the thresholds of every layer of a program.
    thr_base : In
        First threshold row of the current layer (sampled while a run is active).
    run : In(RunControl)
        ``start``: one-cycle pulse: begin a run (an image). Membranes read as zero during
        timestep 0, so no clearing pass is needed. ``busy`` from ``start`` until the last output
        beat is taken; ``done`` pulses once, in the first cycle ``busy`` is low again.
    beats, thr_rows, timesteps : In
        Run-time geometry, sampled while a run is active: beats per timestep (neurons / lanes),
        threshold rows (channels / lanes, must divide ``beats``), timesteps T >= 1.

    Latency and throughput: one beat per cycle when ``spikes.ready`` stays high; the output of a
    beat is valid the cycle after the beat is accepted. Backpressure stalls the input.

    ``accesses`` (an attribute, :func:`~hwgen.units.signatures.accesses_layout` of
    :data:`ACCESSES`): this cycle's membrane and threshold memory accesses, for the core's
    traffic counters.
    """

    def __init__(self, cfg: LifConfig):
        self._cfg = cfg
        thr_row = data.ArrayLayout(unsigned(cfg.threshold_width), cfg.lanes)
        super().__init__({
            "currents": In(stream.Signature(currents_layout(cfg))),
            "spikes": Out(stream.Signature(lif_output_layout(cfg))),
            "thr_write": memory_write(addr_width(cfg.threshold_depth), thr_row),
            "run": In(RunControl()),
            "beats": In(range(cfg.beats + 1)),
            "thr_rows": In(range(cfg.threshold_rows + 1)),
            "thr_base": In(range(max(cfg.threshold_depth, 2))),
            "timesteps": In(range(cfg.max_timesteps + 1)),
        })
        self.accesses = Signal(accesses_layout(ACCESSES), name="lif_accesses")

    @property
    def cfg(self) -> LifConfig:
        return self._cfg

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()

        m.submodules.membrane_mem = mem_v = memory.Memory(
            shape=data.ArrayLayout(signed(cfg.membrane_width), cfg.lanes), depth=memory_words(cfg.beats), init=[])
        m.submodules.threshold_mem = mem_th = memory.Memory(
            shape=data.ArrayLayout(unsigned(cfg.threshold_width), cfg.lanes), depth=memory_words(cfg.threshold_depth),
            init=[])
        v_write = mem_v.write_port()
        # Transparent, so a beat that reads the row written back in the same cycle sees the
        # new membrane (happens when a timestep is a single beat).
        v_read = mem_v.read_port(transparent_for=(v_write,))
        th_write = mem_th.write_port()
        th_read = mem_th.read_port()

        m.d.comb += [
            th_write.en.eq(self.thr_write.en),
            th_write.addr.eq(self.thr_write.addr),
            th_write.data.eq(self.thr_write.data),
        ]

        # Stage 0: accept a beat and read its membranes and thresholds.
        beat = Signal(range(cfg.beats + 1))
        row = Signal(range(cfg.threshold_rows + 1))
        step = Signal(range(cfg.max_timesteps + 1))
        accepting = Signal()

        # Stage 1: the beat's memory data is on the read ports; compute and offer the output.
        s1_valid = Signal()
        s1_addr = Signal.like(beat)
        s1_first = Signal()  # timestep 0: the stored membrane is stale, read it as zero
        s1_currents = Signal.like(self.currents.payload)

        advance = ~s1_valid | self.spikes.ready
        take = self.currents.valid & self.currents.ready
        m.d.comb += [
            self.currents.ready.eq(accepting & advance),
            v_read.addr.eq(beat),
            v_read.en.eq(take),
            th_read.addr.eq(self.thr_base + row),
            th_read.en.eq(take),
        ]

        with m.If(self.run.start):
            m.d.sync += [beat.eq(0), row.eq(0), step.eq(0), accepting.eq(1)]
        with m.Elif(take):
            last_beat = beat == self.beats - 1
            m.d.sync += [
                beat.eq(Mux(last_beat, 0, beat + 1)),
                row.eq(Mux(last_beat | (row == self.thr_rows - 1), 0, row + 1)),
            ]
            with m.If(last_beat):
                m.d.sync += step.eq(step + 1)
                with m.If(step == self.timesteps - 1):
                    m.d.sync += accepting.eq(0)

        with m.If(take):
            m.d.sync += [s1_valid.eq(1), s1_addr.eq(beat), s1_first.eq(step == 0),
                         s1_currents.eq(self.currents.payload)]
        with m.Elif(self.spikes.ready):
            m.d.sync += s1_valid.eq(0)

        # Per-lane neuron update (docs/arithmetic.md, "LIF").
        f, k = cfg.frac_bits, cfg.leak_shift
        v_next = Signal.like(v_read.data)
        for lane in range(cfg.lanes):
            v = Mux(s1_first, 0, v_read.data[lane])
            x = s1_currents[lane] << f
            # H stays between V and X << F, so it fits membrane_width (checked by LifConfig).
            h = Signal(signed(cfg.membrane_width), name=f"h{lane}")
            th = Signal(unsigned(cfg.threshold_width + f), name=f"th{lane}")
            fire = Signal(name=f"fire{lane}")
            m.d.comb += [
                h.eq(v + ((x - v) >> k)),
                th.eq(th_read.data[lane] << f),
                fire.eq(h >= th),
                self.spikes.payload.spikes[lane].eq(fire),
                self.spikes.payload.membranes[lane].eq(h),
            ]
            if cfg.reset == "hard":
                m.d.comb += v_next[lane].eq(Mux(fire, 0, h))
            else:
                m.d.comb += v_next[lane].eq(Mux(fire, h - th, h))

        m.d.comb += [
            self.spikes.valid.eq(s1_valid),
            v_write.addr.eq(s1_addr),
            v_write.data.eq(v_next),
            v_write.en.eq(s1_valid & self.spikes.ready),
            self.accesses.membranes_read.eq(v_read.en),
            self.accesses.membranes_write.eq(v_write.en),
            self.accesses.thresholds_read.eq(th_read.en),
        ]

        running = accepting | s1_valid
        was_running = Signal()
        m.d.sync += was_running.eq(running)
        m.d.comb += [self.run.busy.eq(running), self.run.done.eq(was_running & ~running)]
        return m

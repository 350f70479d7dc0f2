"""Performance and energy of a program on the core, without an RTL run (docs/energy.md).

- :mod:`hwgen.perf.rates`: input firing rates per layer, from a rate table
  (``configs/rates/*.yaml``, e.g. the paper's) or measured from the integer engine's spikes.
- :mod:`hwgen.perf.energy`: synaptic operations per layer in the paper's counting (FLOPs x rate)
  and as the spike-driven datapath performs them; the paper's energy model (E_AC, E_MAC).
- :mod:`hwgen.perf.memory`: the memory-aware energy model: the core's memories, the words each
  layer moves in them, an energy per access by memory size and width (Horowitz, ISSCC 2014).
- :mod:`hwgen.perf.table`: per-layer rows and totals of an estimate (``hwgen estimate``).
- :mod:`hwgen.perf.architecture`: the paper's 15M / 31M / 55M models as layer geometry.

Cycles are not modelled here: they come from the core's cycle model
(``hwgen.compiler.cycles``), which ``hwgen estimate`` plugs in when it is installed.
"""

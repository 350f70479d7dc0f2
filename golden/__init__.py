"""Golden (reference) models for the spike-driven transformer co-design toolkit.

- :mod:`golden.neuron`: the float multi-step LIF neuron (spikingjelly semantics).
- :mod:`golden.model`: Meta-SpikeFormer, reference-compatible state-dict keys.
- :mod:`golden.checkpoint`: loading/saving reference-format checkpoints, with strict checks.
- :mod:`golden.fold`: BatchNorm / RepConv / SepConv folding and the folded layer program.
"""

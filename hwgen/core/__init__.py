"""The neuromorphic core's gateware: the units, tensor memories and a sequencer that runs a whole
program (docs/core.md). ``isa`` declares the instructions, ``engines`` the data movers, ``top``
the generated core. The software side is :mod:`hwgen.compiler`; running it is :mod:`hwgen.sim`."""

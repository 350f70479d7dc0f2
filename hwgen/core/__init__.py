"""The neuromorphic core: the units, tensor memories and a sequencer that runs a whole program
(docs/core.md). ``isa`` declares the instructions, ``engines`` the data movers, ``top`` the
generated core, ``compiler`` turns a program into its memory contents, ``simulate`` is `hwgen sim`."""

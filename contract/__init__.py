"""The contract both halves of the project share, importable by all and importing none of them.

- :mod:`contract.config`: the typed hardware configuration (``configs/hw/*.yaml``), read by the
  generators and by the golden integer engine: the one source of widths and semantics.
- :mod:`contract.program`: the program format that the quantizer writes and both the integer
  engine and the core run.
- :mod:`contract.compare`: exact comparison of integer arrays naming the first mismatch.
- :mod:`contract.fsutil`: output folders that are either complete or absent.
"""

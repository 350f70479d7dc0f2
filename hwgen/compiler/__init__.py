"""The software compiler: a program -> what the core runs (docs/core.md).

- :mod:`hwgen.compiler.placement`: weights, biases and thresholds in their memories' word
  layout, and the accumulator descriptors (a pure function of the program).
- :mod:`hwgen.compiler.padding`: attention heads padded to whole words.
- :mod:`hwgen.compiler.image`: instructions, tensor placement and memory contents of one core.
"""
from hwgen.compiler.image import (
           CoreFitError,
           CoreImage,
           Region,
           compile_program,
           from_words,
           pack_lanes,
           to_words,
)
from hwgen.compiler.placement import (
           MemoryFitError,
           ParameterPlacement,
           place_parameters,
           write_memory_images,
)

__all__ = ["CoreFitError", "CoreImage", "Region", "compile_program", "from_words", "pack_lanes", "to_words",
           "MemoryFitError", "ParameterPlacement", "place_parameters", "write_memory_images"]

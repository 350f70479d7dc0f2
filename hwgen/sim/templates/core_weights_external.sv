// Listed before core_harness.sv for a core built with `accumulator.weights: external`: the harness
// serves the core's weight read stream from harness_extmem (the script's weight words) instead of
// loading a weight memory.
`define CORE_WEIGHTS_EXTERNAL

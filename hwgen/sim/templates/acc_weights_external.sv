// Listed before acc_harness.sv for a unit built with `accumulator.weights: external`: the harness
// connects the unit's weight read stream to harness_extmem instead of loading a weight memory.
`define ACC_WEIGHTS_EXTERNAL

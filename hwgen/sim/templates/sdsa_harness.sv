// File-driven harness around the generated sdsa_unit (harness_io): input beats come from a $readmemh file and output beats go to a $writememh
// file, so a long run needs no Python in the per-cycle loop.
//
// Sequence, driven by three one-cycle pulses from the testbench:
//   load : read the stimulus file (one input beat per line: the unit's whole spikes payload)
//   go   : pulse the unit's `start` (run-time registers sampled then), stream `in_total` beats
//          in (with random idle cycles) and take every output beat (with random stalls)
//   dump : write every output beat, stamped with its cycle, to the result file
// `finished` rises when the unit reports `done`; `cycles` counts from `go` to `done`.
`default_nettype none

module sdsa_harness #(
    parameter int LANES = 4,
    parameter int ACC_WIDTH = 9,
    parameter int IN_WIDTH = 96,         // width of sdsa_unit.spikes__payload
    // the widths of sdsa_unit.tokens, .heads, .head_dim and .timesteps
    parameter int TOKENS_WIDTH = 6, HEADS_WIDTH = 3, HDIM_WIDTH = 4, STEPS_WIDTH = 5,
    parameter int COUNTER_WIDTH = 40,    // width of the sdsa_unit.perf__* counters
    parameter int DEPTH = 32768,         // most input beats one run can hold
    parameter int OUT_DEPTH = 32768      // most output beats one run can hold
) (
    input  wire clk, rst, load, go, dump,   // the handshake of hwgen/sim/harness.py
    input  wire [TOKENS_WIDTH-1:0] tokens,
    input  wire [HEADS_WIDTH-1:0] heads,
    input  wire [HDIM_WIDTH-1:0] head_dim,
    input  wire [STEPS_WIDTH-1:0] timesteps,
    input  wire [31:0] in_total,   // input beats in the stimulus file
    input  wire [31:0] seed,
    input  wire [7:0] in_idle, out_stall,   // idle input / stalled output cycles, in 1/256
    output logic finished,
    output logic [31:0] cycles,
    output wire [31:0] outputs,
    output wire [31:0] inputs,
    output wire [COUNTER_WIDTH-1:0] perf_cycles, perf_additions, perf_in_beats, perf_out_beats,
                                    perf_stall_cycles, perf_starve_cycles
);
    localparam int OUT_W = LANES * ACC_WIDTH;

    logic start, running;
    logic in_valid, in_ready, out_valid, out_ready, busy, done;
    logic [IN_WIDTH-1:0] in_payload;
    logic [OUT_W-1:0] out_payload;

    always_ff @(posedge clk) begin
        start <= go;
        if (rst) running <= 1'b0;
        else if (go) running <= 1'b1;
        else if (done) running <= 1'b0;
    end

    // offered from the `start` cycle: no idle first cycle
    wire [15:0] pace;
    harness_io io (.clk(clk), .rst(rst), .go(go), .seed(seed), .counting(running), .ended(running && done), .pace(pace),
                   .finished(finished), .cycles(cycles));
    harness_source #(.WIDTH(IN_WIDTH), .DEPTH(DEPTH), .FILE("sdsa_stim.hex")) source (
        .clk(clk), .rst(rst), .load(load), .go(go), .run(running), .total(in_total), .idle(in_idle), .pace(pace[7:0]),
        .valid(in_valid), .ready(in_ready), .payload(in_payload), .index(inputs));
    harness_sink #(.WIDTH(OUT_W), .DEPTH(OUT_DEPTH), .STAMP(1'b1), .FILE("sdsa_res.hex")) sink (
        .clk(clk), .rst(rst), .go(go), .dump(dump), .run(running), .stall(out_stall), .pace(pace[15:8]),
        .cycles(cycles), .valid(out_valid), .ready(out_ready), .payload(out_payload), .count(outputs));

    sdsa_unit dut (
        .clk(clk),
        .rst(rst),
        .spikes__payload(in_payload),
        .spikes__valid(in_valid),
        .spikes__ready(in_ready),
        .out__payload(out_payload),
        .out__valid(out_valid),
        .out__ready(out_ready),
        .run__start(start),
        .tokens(tokens),
        .heads(heads),
        .head_dim(head_dim),
        .timesteps(timesteps),
        .run__busy(busy),
        .run__done(done),
        .perf__cycles(perf_cycles),
        .perf__additions(perf_additions),
        .perf__in_beats(perf_in_beats),
        .perf__out_beats(perf_out_beats),
        .perf__stall_cycles(perf_stall_cycles),
        .perf__starve_cycles(perf_starve_cycles)
    );

    wire unused = &{1'b0, busy};
endmodule

`default_nettype wire

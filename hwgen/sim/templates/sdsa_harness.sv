// File-driven harness around the generated sdsa_unit: input beats come from a $readmemh file
// and output beats go to a $writememh file, so a long run needs no Python in the per-cycle loop.
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
    parameter int TOKENS_WIDTH = 6,      // width of sdsa_unit.tokens
    parameter int HEADS_WIDTH = 3,       // width of sdsa_unit.heads
    parameter int HDIM_WIDTH = 4,        // width of sdsa_unit.head_dim
    parameter int STEPS_WIDTH = 5,       // width of sdsa_unit.timesteps
    parameter int COUNTER_WIDTH = 32,    // width of the sdsa_unit.perf__* counters
    parameter int DEPTH = 32768,         // most input beats one run can hold
    parameter int OUT_DEPTH = 32768      // most output beats one run can hold
) (
    input  wire clk,
    input  wire rst,
    input  wire load,
    input  wire go,
    input  wire dump,
    input  wire [TOKENS_WIDTH-1:0] tokens,
    input  wire [HEADS_WIDTH-1:0] heads,
    input  wire [HDIM_WIDTH-1:0] head_dim,
    input  wire [STEPS_WIDTH-1:0] timesteps,
    input  wire [31:0] in_total,   // input beats in the stimulus file
    input  wire [31:0] seed,
    input  wire [7:0] in_idle,     // a cycle offers no new beat with probability in_idle/256
    input  wire [7:0] out_stall,   // ready is low in a cycle with probability out_stall/256
    output logic finished,
    output logic [31:0] cycles,
    output logic [31:0] outputs,
    output logic [31:0] inputs,
    output wire [COUNTER_WIDTH-1:0] perf_cycles,
    output wire [COUNTER_WIDTH-1:0] perf_additions,
    output wire [COUNTER_WIDTH-1:0] perf_in_beats,
    output wire [COUNTER_WIDTH-1:0] perf_out_beats,
    output wire [COUNTER_WIDTH-1:0] perf_stall_cycles,
    output wire [COUNTER_WIDTH-1:0] perf_starve_cycles
);
    localparam int OUT_W = LANES * ACC_WIDTH;
    localparam int IN_AW = $clog2(DEPTH);
    localparam int OUT_AW = $clog2(OUT_DEPTH);

    logic [IN_WIDTH-1:0] stim [DEPTH];
    logic [OUT_W+31:0] res [OUT_DEPTH];

    string stim_file, res_file;
    initial begin
        if (!$value$plusargs("sdsa_stim=%s", stim_file)) stim_file = "sdsa_stim.hex";
        if (!$value$plusargs("sdsa_res=%s", res_file)) res_file = "sdsa_res.hex";
    end

    always @(posedge clk) begin
        if (load) $readmemh(stim_file, stim);
        if (dump && outputs != 0) $writememh(res_file, res, 0, outputs - 1);
    end

    // bits [7:0] gate the input, bits [15:8] the output (harness_rng.sv)
    wire [15:0] rng;
    harness_rng pacing (.clk(clk), .go(go), .seed(seed), .pace(rng));

    typedef enum logic [1:0] {IDLE, RUN, FINISHED} state_t;
    state_t state;
    logic start;

    logic in_valid, in_ready, out_valid, out_ready, busy, done;
    logic [OUT_W-1:0] out_payload;
    wire in_take = in_valid && in_ready;
    wire out_take = out_valid && out_ready;
    assign out_ready = (state == RUN) && (rng[15:8] >= out_stall);

    always_ff @(posedge clk) begin
        start <= 1'b0;
        if (rst) begin
            state <= IDLE;
            finished <= 1'b0;
        end else if (go) begin
            state <= RUN;
            start <= 1'b1;
            finished <= 1'b0;
        end else if (state == RUN && done) begin
            state <= FINISHED;
            finished <= 1'b1;
        end
    end

    // An offered beat stays valid, with the same payload, until the unit takes it.
    always_ff @(posedge clk) begin
        if (rst || go) begin
            in_valid <= 1'b0;
            inputs <= '0;
        end else if (state == RUN) begin  // offered from the `start` cycle: no idle first cycle
            if (in_take) inputs <= inputs + 1;
            if (!in_valid || in_ready)
                in_valid <= (inputs + 32'(in_take) < in_total) && (rng[7:0] >= in_idle);
        end
    end

    always_ff @(posedge clk) begin
        if (rst || go) begin
            outputs <= '0;
            cycles <= '0;
        end else begin
            if (state == RUN) cycles <= cycles + 1;
            if (out_take) begin
                res[outputs[OUT_AW-1:0]] <= {cycles, out_payload};
                outputs <= outputs + 1;
            end
        end
    end

    sdsa_unit dut (
        .clk(clk),
        .rst(rst),
        .spikes__payload(stim[inputs[IN_AW-1:0]]),
        .spikes__valid(in_valid),
        .spikes__ready(in_ready),
        .out__payload(out_payload),
        .out__valid(out_valid),
        .out__ready(out_ready),
        .start(start),
        .tokens(tokens),
        .heads(heads),
        .head_dim(head_dim),
        .timesteps(timesteps),
        .busy(busy),
        .done(done),
        .perf__cycles(perf_cycles),
        .perf__additions(perf_additions),
        .perf__in_beats(perf_in_beats),
        .perf__out_beats(perf_out_beats),
        .perf__stall_cycles(perf_stall_cycles),
        .perf__starve_cycles(perf_starve_cycles)
    );

    wire unused = &{1'b0, busy, inputs[31:IN_AW], outputs[31:OUT_AW]};
endmodule

`default_nettype wire

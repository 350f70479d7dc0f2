// File-driven harness around the generated acc_array (spike-addressed accumulator array), from
// harness_io and harness_rom.
//
//   load : read the weight, bias and event files ($readmemh)
//   go   : write n_weights weight words and n_biases bias words into the unit, pulse `start`
//          with `desc`, then stream n_events events (spike addresses and one flush per
//          timestep; random idle cycles) and take every drained word (random stalls) until
//          `timesteps` drains have ended
//   dump : write every drained word to the result file
// `finished` rises after the last drain; `cycles` counts from `start` to then.
//
// With ACC_WEIGHTS_EXTERNAL defined (acc_weights_external.sv, for `accumulator.weights:
// external`) the unit has no weight memory to load: its weight read stream is served by
// harness_extmem from the same weight image, with the run-time `mem_latency` and
// `mem_bandwidth` (words per cycle); `mem_requests` counts its requests, `mem_bad_requests`
// malformed ones.
`default_nettype none

module acc_harness #(
    parameter int LANES = 4,
    parameter int EVENT_W = 32,
    parameter int DESC_W = 200,
    parameter int ACC_W = 20, WEIGHT_W = 8, BIAS_W = 16,   // accumulator, weight and bias words per lane
    parameter int W_ADDR_W = 12, B_ADDR_W = 6,            // weight and bias memory addresses
    parameter int COUNTER_WIDTH = 40,   // width of the acc_array.counters__* ports
`ifdef ACC_WEIGHTS_EXTERNAL
    parameter int PORT_WORDS = 1, LEN_W = 5, CNT_W = 1, BURST = 16,   // the weight read stream
`endif
    parameter int DEPTH = 65536         // most events, and most drained words, per run
) (
    input  wire clk, rst, load, go, dump,   // the handshake of hwgen/sim/harness.py
    input  wire [DESC_W-1:0] desc,
    input  wire [31:0] n_weights,
    input  wire [31:0] n_biases,
    input  wire [31:0] n_events,
    input  wire [15:0] timesteps,
    input  wire [31:0] seed,
    input  wire [7:0] in_idle, out_stall,   // idle input / stalled output cycles, in 1/256
    input  wire [15:0] mem_latency,         // external weights: cycles from request to first word
    input  wire [1:0] mem_bandwidth,        // external weights: words per cycle
    output wire [31:0] mem_requests, mem_bad_requests,
    output logic finished,
    output logic [31:0] cycles,
    output wire [31:0] outputs,
    output wire busy,
    output wire [COUNTER_WIDTH-1:0] count_busy, count_additions, count_events, count_ops, count_starved,
                                    count_drain, count_drain_stalls, count_weight_stalls, count_weight_words
);
    localparam int OUT_W = LANES * ACC_W + 1;

    typedef enum logic [2:0] {IDLE, WEIGHTS, BIASES, START, RUN, FINISHED} state_t;
    state_t state;
    logic [31:0] load_idx, taken;
    logic [15:0] drains;
    logic start;
    logic ev_valid, ev_ready, sums_valid, sums_ready, done;
    logic [EVENT_W-1:0] ev_payload;
    logic [OUT_W-1:0] sums_payload;

    always_ff @(posedge clk) begin
        start <= 1'b0;
        if (rst) state <= IDLE;
        else if (go) begin
            state <= WEIGHTS;
            load_idx <= '0;
        end else case (state)
            WEIGHTS, BIASES: begin
                load_idx <= load_idx + 1;
                if (load_idx + 1 >= (state == WEIGHTS ? n_weights : n_biases)) begin
                    state <= state == WEIGHTS ? BIASES : START;
                    load_idx <= '0;
                    start <= state == BIASES;
                end
            end
            START: state <= RUN;
            RUN: if (drains == timesteps) state <= FINISHED;
            default: ;
        endcase
    end

    // the drains ended so far: a drained word with `last` ends one
    always_ff @(posedge clk) begin
        if (rst || go) drains <= '0;
        else if (sums_valid && sums_ready && sums_payload[OUT_W-1]) drains <= drains + 1;
    end

    wire [15:0] pace;
    harness_io io (.clk(clk), .rst(rst), .go(go), .seed(seed), .counting(state == RUN || state == START), .ended(state == RUN && drains == timesteps), .pace(pace),
                   .finished(finished), .cycles(cycles));
    harness_source #(.WIDTH(EVENT_W), .DEPTH(DEPTH), .FILE("acc_events.hex")) source (
        .clk(clk), .rst(rst), .load(load), .go(go), .run(state == RUN), .total(n_events), .idle(in_idle), .pace(pace[7:0]),
        .valid(ev_valid), .ready(ev_ready), .payload(ev_payload), .index(taken));
    harness_sink #(.WIDTH(OUT_W), .DEPTH(DEPTH), .STAMP(1'b0), .FILE("acc_res.hex")) sink (
        .clk(clk), .rst(rst), .go(go), .dump(dump), .run(state == RUN), .stall(out_stall), .pace(pace[15:8]),
        .cycles(cycles), .valid(sums_valid), .ready(sums_ready), .payload(sums_payload), .count(outputs));

    wire [W_ADDR_W-1:0] w_addr = load_idx[W_ADDR_W-1:0];
    wire [B_ADDR_W-1:0] b_addr = load_idx[B_ADDR_W-1:0];
    wire [LANES*WEIGHT_W-1:0] w_data;
    wire [LANES*BIAS_W-1:0] b_data;
    harness_rom #(.WIDTH(LANES * WEIGHT_W), .DEPTH(1 << W_ADDR_W), .FILE("acc_weights.hex")) weights (
        .clk(clk), .load(load), .addr(w_addr), .data(w_data));
    harness_rom #(.WIDTH(LANES * BIAS_W), .DEPTH(1 << B_ADDR_W), .FILE("acc_biases.hex")) biases (
        .clk(clk), .load(load), .addr(b_addr), .data(b_data));

`ifdef ACC_WEIGHTS_EXTERNAL
    logic req_valid, req_ready, resp_valid, resp_ready;
    logic [W_ADDR_W+LEN_W-1:0] req_payload;
    logic [PORT_WORDS*LANES*WEIGHT_W+CNT_W-1:0] resp_payload;
    harness_extmem #(.WORD_W(LANES * WEIGHT_W), .PORT_WORDS(PORT_WORDS), .ADDR_W(W_ADDR_W), .LEN_W(LEN_W),
                     .CNT_W(CNT_W), .BURST(BURST), .DEPTH(1 << W_ADDR_W), .FILE("acc_weights.hex")) memory (
        .clk(clk), .rst(rst), .load(load), .go(go), .latency(mem_latency), .bandwidth(mem_bandwidth),
        .words(n_weights), .req_valid(req_valid), .req_ready(req_ready), .req_payload(req_payload),
        .resp_valid(resp_valid), .resp_ready(resp_ready), .resp_payload(resp_payload),
        .requests(mem_requests), .bad_requests(mem_bad_requests));
`else
    assign mem_requests = '0;
    assign mem_bad_requests = '0;
    wire unused_mem = &{1'b0, mem_latency, mem_bandwidth};
`endif

    acc_array dut (
        .clk(clk),
        .rst(rst),
        .events__payload(ev_payload),
        .events__valid(ev_valid),
        .events__ready(ev_ready),
        .sums__payload(sums_payload),
        .sums__valid(sums_valid),
        .sums__ready(sums_ready),
        .desc(desc),
        .run__start(start),
        .run__busy(busy),
        .run__done(done),
`ifdef ACC_WEIGHTS_EXTERNAL
        .weight_read__request__valid(req_valid),
        .weight_read__request__ready(req_ready),
        .weight_read__request__payload(req_payload),
        .weight_read__response__valid(resp_valid),
        .weight_read__response__ready(resp_ready),
        .weight_read__response__payload(resp_payload),
`else
        .weight_write__en(state == WEIGHTS && n_weights != 0),
        .weight_write__addr(w_addr),
        .weight_write__data(w_data),
`endif
        .bias_write__en(state == BIASES && n_biases != 0),
        .bias_write__addr(b_addr),
        .bias_write__data(b_data),
        .counters__busy(count_busy),
        .counters__additions(count_additions),
        .counters__events(count_events),
        .counters__ops(count_ops),
        .counters__starved(count_starved),
        .counters__drain(count_drain),
        .counters__drain_stalls(count_drain_stalls),
        .counters__weight_stalls(count_weight_stalls),
        .counters__weight_words(count_weight_words)
    );

`ifdef ACC_WEIGHTS_EXTERNAL
    wire unused = &{1'b0, done, taken, load_idx[31:W_ADDR_W], w_data};   // no weight memory to load
`else
    wire unused = &{1'b0, done, taken, load_idx[31:W_ADDR_W]};
`endif
endmodule

`default_nettype wire

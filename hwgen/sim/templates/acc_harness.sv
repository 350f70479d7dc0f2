// File-driven harness around the generated acc_array (spike-addressed accumulator array).
//
//   load : read the weight, bias and event files ($readmemh)
//   go   : write n_weights weight words and n_biases bias words into the unit, pulse `start`
//          with `desc`, then stream n_events events (spike addresses and one flush per
//          timestep; random idle cycles) and take every drained word (random stalls) until
//          `timesteps` drains have ended
//   dump : write every drained word to the result file
// `finished` rises after the last drain; `cycles` counts from `start` to then.
`default_nettype none

module acc_harness #(
    parameter int LANES = 4,
    parameter int EVENT_W = 32,
    parameter int DESC_W = 200,
    parameter int ACC_W = 20,
    parameter int WEIGHT_W = 8,
    parameter int BIAS_W = 16,
    parameter int W_ADDR_W = 12,
    parameter int B_ADDR_W = 6,
    parameter int DEPTH = 65536         // most events, and most drained words, per run
) (
    input  wire clk,
    input  wire rst,
    input  wire load,
    input  wire go,
    input  wire dump,
    input  wire [DESC_W-1:0] desc,
    input  wire [31:0] n_weights,
    input  wire [31:0] n_biases,
    input  wire [31:0] n_events,
    input  wire [15:0] timesteps,
    input  wire [31:0] seed,
    input  wire [7:0] in_idle,
    input  wire [7:0] out_stall,
    output logic finished,
    output logic [31:0] cycles,
    output logic [31:0] outputs,
    output wire idle,
    output wire [39:0] count_busy,
    output wire [39:0] count_additions,
    output wire [39:0] count_events,
    output wire [39:0] count_ops,
    output wire [39:0] count_starved,
    output wire [39:0] count_drain,
    output wire [39:0] count_drain_stalls
);
    localparam int OUT_W = LANES * ACC_W + 1;
    localparam int AW = $clog2(DEPTH);

    logic [LANES*WEIGHT_W-1:0] w_img [1 << W_ADDR_W];
    logic [LANES*BIAS_W-1:0] b_img [1 << B_ADDR_W];
    logic [EVENT_W-1:0] ev_img [DEPTH];
    logic [OUT_W-1:0] res [DEPTH];

    string w_file, b_file, ev_file, res_file;
    initial begin
        if (!$value$plusargs("acc_weights=%s", w_file)) w_file = "acc_weights.hex";
        if (!$value$plusargs("acc_biases=%s", b_file)) b_file = "acc_biases.hex";
        if (!$value$plusargs("acc_events=%s", ev_file)) ev_file = "acc_events.hex";
        if (!$value$plusargs("acc_res=%s", res_file)) res_file = "acc_res.hex";
    end

    always @(posedge clk) begin
        if (load) begin
            $readmemh(w_file, w_img);
            $readmemh(b_file, b_img);
            $readmemh(ev_file, ev_img);
        end
        if (dump && outputs != 0) $writememh(res_file, res, 0, outputs - 1);
    end

    // bits [7:0] gate the input, bits [15:8] the output (harness_rng.sv)
    wire [15:0] rng;
    harness_rng pacing (.clk(clk), .go(go), .seed(seed), .pace(rng));

    typedef enum logic [2:0] {IDLE, WEIGHTS, BIASES, START, RUN, FINISHED} state_t;
    state_t state;
    logic [31:0] load_idx, idx;
    logic [15:0] drains;
    logic start;

    logic ev_valid, ev_ready, sums_valid, sums_ready;
    logic [OUT_W-1:0] sums_payload;
    wire ev_take = ev_valid && ev_ready;
    wire out_take = sums_valid && sums_ready;
    wire last_word = sums_payload[OUT_W-1];
    assign sums_ready = (state == RUN) && (rng[15:8] >= out_stall);

    always_ff @(posedge clk) begin
        start <= 1'b0;
        if (rst) begin
            state <= IDLE;
            finished <= 1'b0;
        end else if (go) begin
            state <= WEIGHTS;
            load_idx <= '0;
            finished <= 1'b0;
        end else begin
            case (state)
                WEIGHTS: begin
                    load_idx <= load_idx + 1;
                    if (load_idx + 1 >= n_weights) begin
                        state <= BIASES;
                        load_idx <= '0;
                    end
                end
                BIASES: begin
                    load_idx <= load_idx + 1;
                    if (load_idx + 1 >= n_biases) begin
                        state <= START;
                        start <= 1'b1;
                    end
                end
                START: state <= RUN;
                RUN: if (drains == timesteps) begin
                    state <= FINISHED;
                    finished <= 1'b1;
                end
                default: ;
            endcase
        end
    end

    // An offered event stays valid, with the same payload, until the unit takes it.
    always_ff @(posedge clk) begin
        if (rst || go) begin
            ev_valid <= 1'b0;
            idx <= '0;
        end else if (state == RUN) begin
            if (ev_take) idx <= idx + 1;
            if (!ev_valid || ev_ready)
                ev_valid <= (idx + 32'(ev_take) < n_events) && (rng[7:0] >= in_idle);
        end
    end

    always_ff @(posedge clk) begin
        if (rst || go) begin
            outputs <= '0;
            cycles <= '0;
            drains <= '0;
        end else begin
            if (state == RUN || state == START) cycles <= cycles + 1;
            if (out_take) begin
                res[outputs[AW-1:0]] <= sums_payload;
                outputs <= outputs + 1;
                if (last_word) drains <= drains + 1;
            end
        end
    end

    wire [W_ADDR_W-1:0] w_addr = load_idx[W_ADDR_W-1:0];
    wire [B_ADDR_W-1:0] b_addr = load_idx[B_ADDR_W-1:0];

    acc_array dut (
        .clk(clk),
        .rst(rst),
        .events__payload(ev_img[idx[AW-1:0]]),
        .events__valid(ev_valid),
        .events__ready(ev_ready),
        .sums__payload(sums_payload),
        .sums__valid(sums_valid),
        .sums__ready(sums_ready),
        .desc(desc),
        .start(start),
        .idle(idle),
        .weight_write__en(state == WEIGHTS && n_weights != 0),
        .weight_write__addr(w_addr),
        .weight_write__data(w_img[w_addr]),
        .bias_write__en(state == BIASES && n_biases != 0),
        .bias_write__addr(b_addr),
        .bias_write__data(b_img[b_addr]),
        .counters__busy(count_busy),
        .counters__additions(count_additions),
        .counters__events(count_events),
        .counters__ops(count_ops),
        .counters__starved(count_starved),
        .counters__drain(count_drain),
        .counters__drain_stalls(count_drain_stalls)
    );

    wire unused = &{1'b0, idx[31:AW], load_idx[31:W_ADDR_W]};
endmodule

`default_nettype wire

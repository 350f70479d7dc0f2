// File-driven harness around the generated lif_core: stimuli come from $readmemh files and
// results go to a $writememh file, so a long run needs no Python in the per-cycle loop.
//
// Sequence, driven by three one-cycle pulses from the testbench:
//   load : read the stimulus file (currents, one beat per line) and the threshold file
//   go   : write the threshold rows into the core, pulse `start`, stream `beats*timesteps`
//          beats in (with random idle cycles) and take every output (with random stalls)
//   dump : write every output beat, stamped with its cycle, to the result file
// `finished` rises when the core reports `done`; `cycles` counts from `start` to `done`.
`default_nettype none

module lif_harness #(
    parameter int LANES = 4,
    parameter int CURRENT_WIDTH = 12,
    parameter int MEMBRANE_WIDTH = 18,
    parameter int THRESHOLD_WIDTH = 11,
    parameter int BEATS_WIDTH = 9,       // width of lif_core.beats
    parameter int ROWS_WIDTH = 5,        // width of lif_core.thr_rows
    parameter int ROW_ADDR_WIDTH = 4,    // width of lif_core.thr_write__addr
    parameter int STEPS_WIDTH = 5,       // width of lif_core.timesteps
    parameter int DEPTH = 65536          // most beats (x timesteps) one run can hold
) (
    input  wire clk,
    input  wire rst,
    input  wire load,
    input  wire go,
    input  wire dump,
    input  wire [BEATS_WIDTH-1:0] beats,
    input  wire [ROWS_WIDTH-1:0] thr_rows,
    input  wire [STEPS_WIDTH-1:0] timesteps,
    input  wire [31:0] seed,
    input  wire [7:0] in_idle,     // a cycle offers no new beat with probability in_idle/256
    input  wire [7:0] out_stall,   // ready is low in a cycle with probability out_stall/256
    output logic finished,
    output logic [31:0] cycles,
    output logic [31:0] outputs
);
    localparam int IN_W = LANES * CURRENT_WIDTH;
    localparam int OUT_W = LANES + LANES * MEMBRANE_WIDTH;
    localparam int THR_W = LANES * THRESHOLD_WIDTH;
    localparam int THR_DEPTH = 1 << ROW_ADDR_WIDTH;

    logic [IN_W-1:0] stim [DEPTH];
    logic [THR_W-1:0] thr_img [THR_DEPTH];
    logic [OUT_W+31:0] res [DEPTH];

    string stim_file, thr_file, res_file;
    initial begin
        if (!$value$plusargs("lif_stim=%s", stim_file)) stim_file = "lif_stim.hex";
        if (!$value$plusargs("lif_thr=%s", thr_file)) thr_file = "lif_thr.hex";
        if (!$value$plusargs("lif_res=%s", res_file)) res_file = "lif_res.hex";
    end

    always @(posedge clk) begin
        if (load) begin
            $readmemh(stim_file, stim);
            $readmemh(thr_file, thr_img);
        end
        if (dump && outputs != 0) $writememh(res_file, res, 0, outputs - 1);
    end

    // bits [7:0] gate the input, bits [15:8] the output (harness_rng.sv)
    wire [15:0] rng;
    harness_rng pacing (.clk(clk), .go(go), .seed(seed), .pace(rng));

    typedef enum logic [1:0] {IDLE, THRESHOLDS, RUN, FINISHED} state_t;
    state_t state;
    logic [ROWS_WIDTH-1:0] row;
    logic start;
    logic [31:0] total, idx;

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
            state <= THRESHOLDS;
            row <= '0;
            finished <= 1'b0;
            total <= 32'(beats) * 32'(timesteps);
        end else begin
            case (state)
                THRESHOLDS: begin
                    row <= row + 1'b1;
                    if (row + 1'b1 == thr_rows) begin
                        state <= RUN;
                        start <= 1'b1;
                    end
                end
                RUN: if (done) begin
                    state <= FINISHED;
                    finished <= 1'b1;
                end
                default: ;
            endcase
        end
    end

    // An offered beat stays valid, with the same payload, until the core takes it.
    always_ff @(posedge clk) begin
        if (rst || go) begin
            in_valid <= 1'b0;
            idx <= '0;
        end else if (state == RUN && !start) begin
            if (in_take) idx <= idx + 1;
            if (!in_valid || in_ready)
                in_valid <= (idx + 32'(in_take) < total) && (rng[7:0] >= in_idle);
        end
    end

    always_ff @(posedge clk) begin
        if (rst || go) begin
            outputs <= '0;
            cycles <= '0;
        end else begin
            if (state == RUN) cycles <= cycles + 1;
            if (out_take) begin
                res[outputs[$clog2(DEPTH)-1:0]] <= {cycles, out_payload};
                outputs <= outputs + 1;
            end
        end
    end

    // the row counter and the memory address may differ in width either way
    logic [ROW_ADDR_WIDTH-1:0] thr_addr;
    if (ROWS_WIDTH >= ROW_ADDR_WIDTH) begin : g_addr_narrow
        assign thr_addr = row[ROW_ADDR_WIDTH-1:0];
    end else begin : g_addr_wide
        assign thr_addr = {{(ROW_ADDR_WIDTH - ROWS_WIDTH){1'b0}}, row};
    end

    lif_core dut (
        .clk(clk),
        .rst(rst),
        .currents__payload(stim[idx[$clog2(DEPTH)-1:0]]),
        .currents__valid(in_valid),
        .currents__ready(in_ready),
        .spikes__payload(out_payload),
        .spikes__valid(out_valid),
        .spikes__ready(out_ready),
        .thr_write__en(state == THRESHOLDS),
        .thr_write__addr(thr_addr),
        .thr_write__data(thr_img[thr_addr]),
        .start(start),
        .beats(beats),
        .thr_rows(thr_rows),
        .thr_base('0),
        .timesteps(timesteps),
        .busy(busy),
        .done(done)
    );

    wire unused = &{1'b0, busy, idx[31:$clog2(DEPTH)]};
    if (ROWS_WIDTH > ROW_ADDR_WIDTH) begin : g_row_high
        wire unused_row = &{1'b0, row[ROWS_WIDTH-1:ROW_ADDR_WIDTH]};
    end
endmodule

`default_nettype wire

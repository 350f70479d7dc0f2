// File-driven harness around the generated lif_core (harness_io, harness_rom): stimuli come from $readmemh files and results go to a $writememh
// file, so a long run needs no Python in the per-cycle loop.
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
    parameter int CURRENT_WIDTH = 12, MEMBRANE_WIDTH = 18, THRESHOLD_WIDTH = 11,   // per lane
    // the widths of lif_core.beats, .thr_rows, .thr_write__addr and .timesteps
    parameter int BEATS_WIDTH = 9, ROWS_WIDTH = 5, ROW_ADDR_WIDTH = 4, STEPS_WIDTH = 5,
    parameter int DEPTH = 65536          // most beats (x timesteps) one run can hold
) (
    input  wire clk, rst, load, go, dump,   // the handshake of hwgen/sim/harness.py
    input  wire [BEATS_WIDTH-1:0] beats,
    input  wire [ROWS_WIDTH-1:0] thr_rows,
    input  wire [STEPS_WIDTH-1:0] timesteps,
    input  wire [31:0] seed,
    input  wire [7:0] in_idle, out_stall,   // idle input / stalled output cycles, in 1/256
    output logic finished,
    output logic [31:0] cycles,
    output wire [31:0] outputs
);
    localparam int IN_W = LANES * CURRENT_WIDTH;
    localparam int OUT_W = LANES + LANES * MEMBRANE_WIDTH;
    localparam int THR_W = LANES * THRESHOLD_WIDTH;

    typedef enum logic [1:0] {IDLE, THRESHOLDS, RUN, FINISHED} state_t;
    state_t state;
    logic [ROWS_WIDTH-1:0] row;
    logic start;
    logic [31:0] total, taken;
    logic in_valid, in_ready, out_valid, out_ready, busy, done;
    logic [IN_W-1:0] in_payload;
    logic [OUT_W-1:0] out_payload;

    always_ff @(posedge clk) begin   // the threshold rows first, then one `start`: the core runs until `done`
        start <= 1'b0;
        if (rst) state <= IDLE;
        else if (go) begin
            state <= THRESHOLDS;
            row <= '0;
            total <= 32'(beats) * 32'(timesteps);
        end else if (state == THRESHOLDS) begin
            row <= row + 1'b1;
            if (row + 1'b1 == thr_rows) begin
                state <= RUN;
                start <= 1'b1;
            end
        end else if (state == RUN && done) state <= FINISHED;
    end

    wire [15:0] pace;
    harness_io io (.clk(clk), .rst(rst), .go(go), .seed(seed), .counting(state == RUN), .ended(state == RUN && done), .pace(pace),
                   .finished(finished), .cycles(cycles));
    harness_source #(.WIDTH(IN_W), .DEPTH(DEPTH), .FILE("lif_stim.hex")) source (
        .clk(clk), .rst(rst), .load(load), .go(go), .run(state == RUN && !start), .total(total), .idle(in_idle), .pace(pace[7:0]),
        .valid(in_valid), .ready(in_ready), .payload(in_payload), .index(taken));
    harness_sink #(.WIDTH(OUT_W), .DEPTH(DEPTH), .STAMP(1'b1), .FILE("lif_res.hex")) sink (
        .clk(clk), .rst(rst), .go(go), .dump(dump), .run(state == RUN), .stall(out_stall), .pace(pace[15:8]),
        .cycles(cycles), .valid(out_valid), .ready(out_ready), .payload(out_payload), .count(outputs));

    // the row counter and the memory address may differ in width either way
    logic [ROW_ADDR_WIDTH-1:0] thr_addr;
    if (ROWS_WIDTH >= ROW_ADDR_WIDTH) begin : g_addr_narrow
        assign thr_addr = row[ROW_ADDR_WIDTH-1:0];
    end else begin : g_addr_wide
        assign thr_addr = {{(ROW_ADDR_WIDTH - ROWS_WIDTH){1'b0}}, row};
    end
    wire [THR_W-1:0] thr_data;
    harness_rom #(.WIDTH(THR_W), .DEPTH(1 << ROW_ADDR_WIDTH), .FILE("lif_thr.hex")) thresholds (
        .clk(clk), .load(load), .addr(thr_addr), .data(thr_data));

    lif_core dut (
        .clk(clk),
        .rst(rst),
        .currents__payload(in_payload),
        .currents__valid(in_valid),
        .currents__ready(in_ready),
        .spikes__payload(out_payload),
        .spikes__valid(out_valid),
        .spikes__ready(out_ready),
        .thr_write__en(state == THRESHOLDS),
        .thr_write__addr(thr_addr),
        .thr_write__data(thr_data),
        .run__start(start),
        .beats(beats),
        .thr_rows(thr_rows),
        .thr_base('0),
        .timesteps(timesteps),
        .run__busy(busy),
        .run__done(done)
    );

    wire unused = &{1'b0, busy, taken};
    if (ROWS_WIDTH > ROW_ADDR_WIDTH) begin : g_row_high
        wire unused_row = &{1'b0, row[ROWS_WIDTH-1:ROW_ADDR_WIDTH]};
    end
endmodule

`default_nettype wire

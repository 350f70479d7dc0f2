// What every file-driven harness wraps around its unit: the pacing generator (harness_rng),
// the input stream from a file (harness_source), the output stream to a file (harness_sink),
// the cycle counter and the `finished` flag. Bits [7:0] of the pacing gate the input, bits
// [15:8] the output.
`default_nettype none

module harness_io #(
    parameter int IN_W = 8,
    parameter int IN_DEPTH = 1024,
    parameter string IN_FILE = "in.hex",
    parameter int OUT_W = 8,
    parameter int OUT_DEPTH = 1024,
    parameter bit STAMP = 1'b1,       // keep each output word's cycle beside it
    parameter string OUT_FILE = "out.hex"
) (
    input  wire clk,
    input  wire rst,
    input  wire load,
    input  wire go,
    input  wire dump,
    input  wire [31:0] seed,
    input  wire [7:0] in_idle,
    input  wire [7:0] out_stall,
    input  wire in_run,               // offer input words
    input  wire [31:0] in_total,
    input  wire out_run,              // take output words
    input  wire counting,             // cycles counts while high
    input  wire ended,                // the run is over: finished rises
    output logic finished,
    output logic [31:0] cycles,
    output wire in_valid,
    input  wire in_ready,
    output wire [IN_W-1:0] in_payload,
    output wire [31:0] in_index,
    input  wire out_valid,
    output wire out_ready,
    input  wire [OUT_W-1:0] out_payload,
    output wire [31:0] out_count
);
    wire [15:0] pace;
    harness_rng pacing (.clk(clk), .go(go), .seed(seed), .pace(pace));
    harness_source #(.WIDTH(IN_W), .DEPTH(IN_DEPTH), .FILE(IN_FILE)) source (
        .clk(clk), .rst(rst), .load(load), .go(go), .run(in_run), .total(in_total), .idle(in_idle),
        .pace(pace[7:0]), .valid(in_valid), .ready(in_ready), .payload(in_payload), .index(in_index));
    harness_sink #(.WIDTH(OUT_W), .DEPTH(OUT_DEPTH), .STAMP(STAMP), .FILE(OUT_FILE)) sink (
        .clk(clk), .rst(rst), .go(go), .dump(dump), .run(out_run), .stall(out_stall), .pace(pace[15:8]),
        .cycles(cycles), .valid(out_valid), .ready(out_ready), .payload(out_payload), .count(out_count));

    always_ff @(posedge clk) begin
        if (rst || go) begin
            cycles <= '0;
            finished <= 1'b0;
        end else begin
            if (counting) cycles <= cycles + 1;
            if (ended) finished <= 1'b1;
        end
    end
endmodule

`default_nettype wire

// A stream sink for the file-driven harnesses: ready while `run` is high except with
// probability stall/256 (`pace`: a random byte); every word taken is kept (with STAMP, beside
// the `cycles` count it was taken at, in the top 32 bits) and `dump` writes them to FILE.
`default_nettype none

module harness_sink #(
    parameter int WIDTH = 8,
    parameter int DEPTH = 1024,       // most words one run can hold
    parameter bit STAMP = 1'b1,
    parameter string FILE = "sink.hex"
) (
    input  wire clk, rst,
    input  wire go,                   // a run begins: the count restarts
    input  wire dump,
    input  wire run,
    input  wire [7:0] stall, pace,
    input  wire [31:0] cycles,
    input  wire valid,
    output wire ready,
    input  wire [WIDTH-1:0] payload,
    output logic [31:0] count         // words taken
);
    localparam int AW = $clog2(DEPTH);
    localparam int W = STAMP ? WIDTH + 32 : WIDTH;
    logic [W-1:0] kept [DEPTH];
    assign ready = run && (pace >= stall);

    // the stamp sits above the payload; without STAMP the cast keeps the payload alone (and
    // the word is built only when one is taken: a wide payload costs nothing in other cycles)
    always_ff @(posedge clk) begin
        if (rst || go) count <= '0;
        else if (valid && ready) begin
            kept[count[AW-1:0]] <= W'({cycles, payload});
            count <= count + 1;
        end
    end

    always @(posedge clk) if (dump && count != 0) $writememh(FILE, kept, 0, count - 1);

    wire unused = &{1'b0, count[31:AW]};
endmodule

`default_nettype wire

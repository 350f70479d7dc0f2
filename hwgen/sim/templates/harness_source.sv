// A stream source for the file-driven harnesses: offers the `total` words of FILE ($readmemh on
// `load`) in order while `run` is high, with an idle cycle (no new word offered) with
// probability idle/256 (`pace`: a random byte). An offered word stays valid, with the same
// payload, until taken.
`default_nettype none

module harness_source #(
    parameter int WIDTH = 8,
    parameter int DEPTH = 1024,       // most words one run can hold
    parameter string FILE = "source.hex"
) (
    input  wire clk, rst,
    input  wire load,                 // read FILE
    input  wire go,                   // a run begins: back to word 0
    input  wire run,
    input  wire [31:0] total,
    input  wire [7:0] idle, pace,
    output logic valid,
    input  wire ready,
    output wire [WIDTH-1:0] payload,
    output logic [31:0] index         // words taken
);
    localparam int AW = $clog2(DEPTH);
    logic [WIDTH-1:0] words [DEPTH];
    always @(posedge clk) if (load) $readmemh(FILE, words);
    // read straight from the image: a wide payload is copied once, not per module level
    assign payload = words[index[AW-1:0]];
    wire take = valid && ready;

    always_ff @(posedge clk) begin
        if (rst || go) begin
            valid <= 1'b0;
            index <= '0;
        end else if (run) begin
            if (take) index <= index + 1;
            if (!valid || ready)
                valid <= (index + 32'(take) < total) && (pace >= idle);
        end
    end

    wire unused = &{1'b0, index[31:AW]};
endmodule

`default_nettype wire

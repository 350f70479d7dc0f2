// An image memory for the file-driven harnesses: `load` reads FILE ($readmemh, one word per
// line); the word at `addr` is on `data` in the same cycle.
`default_nettype none

module harness_rom #(
    parameter int WIDTH = 8,
    parameter int DEPTH = 1024,
    parameter string FILE = "image.hex"
) (
    input  wire clk,
    input  wire load,
    input  wire [$clog2(DEPTH)-1:0] addr,
    output wire [WIDTH-1:0] data
);
    logic [WIDTH-1:0] words [DEPTH];
    always @(posedge clk) if (load) $readmemh(FILE, words);
    assign data = words[addr];
endmodule

`default_nettype wire

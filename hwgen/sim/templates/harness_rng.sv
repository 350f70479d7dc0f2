// Pseudo-random pacing for the file-driven harnesses: a xorshift32 generator, reseeded by
// `go` (seed 0 becomes 1: xorshift must not start at zero). Each harness gates its input with
// bits [7:0] and its output with bits [15:8].
`default_nettype none

module harness_rng (
    input  wire clk,
    input  wire go,
    input  wire [31:0] seed,
    output wire [15:0] pace     // the low bits of the state
);
    logic [31:0] rng;
    assign pace = rng[15:0];

    always_ff @(posedge clk) begin
        if (go) rng <= (seed == 0) ? 32'h1 : seed;
        else begin
            logic [31:0] x;
            x = rng ^ (rng << 13);
            x = x ^ (x >> 17);
            rng <= x ^ (x << 5);
        end
    end

    wire unused = &{1'b0, rng[31:16]};
endmodule

`default_nettype wire

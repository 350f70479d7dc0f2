// What every file-driven harness keeps beside its unit, its harness_source and harness_sink:
// the pacing generator (harness_rng; `pace` bits [7:0] gate the input, bits [15:8] the
// output), the cycle counter and the `finished` flag.
`default_nettype none

module harness_io (
    input  wire clk, rst, go,
    input  wire [31:0] seed,
    input  wire counting,             // cycles counts while high
    input  wire ended,                // the run is over: finished rises
    output wire [15:0] pace,
    output logic finished,
    output logic [31:0] cycles
);
    harness_rng pacing (.clk(clk), .go(go), .seed(seed), .pace(pace));

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

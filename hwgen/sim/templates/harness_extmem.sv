// An external weight memory for the file-driven harnesses: serves burst read requests
// ({len, addr}: len consecutive words from addr) from the image FILE ($readmemh on `load`), in
// request order, with a fixed latency and a bandwidth given at run time (not hardware):
//
//   latency   : cycles from a request accepted (valid & ready) to its first word valid (>= 2)
//   bandwidth : words per cycle, 1 or 2 (2 only on a PORT_WORDS = 2 port): a beat carries up to
//               `bandwidth` words, continuing into the next request when the first ends there and
//               the next one is due
//
// Requests are pipelined (QUEUE outstanding; each is due `latency` cycles after it was accepted,
// served once the earlier ones are done), so a stream of requests keeps the port busy. The beat
// is registered and held while not taken (stream rules). `requests` counts requests accepted,
// `bad_requests` those with len = 0, len > BURST or words past `words`.
`default_nettype none

module harness_extmem #(
    parameter int WORD_W = 32,
    parameter int PORT_WORDS = 1,
    parameter int ADDR_W = 12, LEN_W = 5, CNT_W = 1,
    parameter int BURST = 16,
    parameter int DEPTH = 4096,
    parameter int QUEUE = 256,
    parameter string FILE = "acc_weights.hex"
) (
    input  wire clk, rst, load, go,
    input  wire [15:0] latency,
    input  wire [1:0] bandwidth,
    input  wire [31:0] words,               // words of the image
    input  wire req_valid,
    output wire req_ready,
    input  wire [ADDR_W+LEN_W-1:0] req_payload,
    output logic resp_valid,
    input  wire resp_ready,
    output logic [PORT_WORDS*WORD_W+CNT_W-1:0] resp_payload,
    output logic [31:0] requests, bad_requests
);
    localparam int QW = $clog2(QUEUE);
    logic [WORD_W-1:0] image [DEPTH];
    always @(posedge clk) if (load) $readmemh(FILE, image);

    logic [ADDR_W-1:0] q_addr [QUEUE];
    logic [LEN_W-1:0] q_len [QUEUE];
    logic [31:0] q_due [QUEUE];
    logic [QW:0] wr, rd;                    // one bit more than an index: full and empty differ
    logic [LEN_W-1:0] off;                  // words of the head request already sent
    logic [31:0] now;
    wire [QW:0] used = wr - rd;
    assign req_ready = used != (QW+1)'(QUEUE);
    wire [ADDR_W-1:0] r_addr = req_payload[ADDR_W-1:0];
    wire [LEN_W-1:0] r_len = req_payload[ADDR_W +: LEN_W];
    wire [QW-1:0] h0 = rd[QW-1:0], h1 = QW'(rd + 1);

    // the next two words: the head request's at `off`, then its next one or the next request's first
    logic w0_ok, w1_ok, last0, last1, two;
    logic [ADDR_W-1:0] a0, a1;
    always_comb begin
        w0_ok = used != 0 && now >= q_due[h0];
        a0 = q_addr[h0] + ADDR_W'(off);
        last0 = off + 1'b1 == q_len[h0];
        if (!last0) begin
            a1 = a0 + 1'b1;
            w1_ok = w0_ok;
            last1 = off + LEN_W'(2) == q_len[h0];
        end else begin
            a1 = q_addr[h1];
            w1_ok = w0_ok && used >= 2 && now >= q_due[h1];
            last1 = q_len[h1] == 1;
        end
        two = PORT_WORDS == 2 && bandwidth == 2 && w1_ok;
    end

    wire [WORD_W-1:0] d0 = image[a0[$clog2(DEPTH)-1:0]], d1 = image[a1[$clog2(DEPTH)-1:0]];
    wire accept = req_valid && req_ready;
    always_ff @(posedge clk) begin
        if (rst || go) begin
            wr <= '0;
            rd <= '0;
            off <= '0;
            now <= '0;
            resp_valid <= 1'b0;
            requests <= '0;
            bad_requests <= '0;
        end else begin
            now <= now + 1;
            if (accept) begin
                q_addr[wr[QW-1:0]] <= r_addr;
                q_len[wr[QW-1:0]] <= r_len;
                q_due[wr[QW-1:0]] <= now + 32'(latency) - 1;
                wr <= wr + 1;
                requests <= requests + 1;
                if (r_len == 0 || 32'(r_len) > BURST || 32'(r_addr) + 32'(r_len) > words)
                    bad_requests <= bad_requests + 1;
            end
            if (!resp_valid || resp_ready) begin
                resp_valid <= w0_ok;
                if (w0_ok) begin
                    resp_payload <= '0;
                    resp_payload[WORD_W-1:0] <= d0;
                    resp_payload[PORT_WORDS*WORD_W +: CNT_W] <= CNT_W'(two ? 2 : 1);
                    if (two) resp_payload[(PORT_WORDS-1)*WORD_W +: WORD_W] <= d1;
                    if (!two) begin
                        if (last0) begin
                            rd <= rd + 1;
                            off <= '0;
                        end else off <= off + 1'b1;
                    end else if (!last0) begin
                        if (last1) begin
                            rd <= rd + 1;
                            off <= '0;
                        end else off <= off + LEN_W'(2);
                    end else if (last1) begin
                        rd <= rd + 2;
                        off <= '0;
                    end else begin
                        rd <= rd + 1;
                        off <= 1;
                    end
                end
            end
        end
    end
endmodule

`default_nettype wire

// File-driven harness around the generated neuromorphic core (hwgen/core).
//
// On `go` (once per simulation) it executes a script, one line per cycle, each `OP SEL ADDR DATA` in hex:
//   0  load DATA into memory SEL at ADDR through the core's load port
//   1  pulse `start` and wait for `done` (one image)
//   2  end: close the files and raise `finished`
//   3  external weights: word DATA of the weight memory model at ADDR (SEL unused)
// Before each image (op 1) it looks for the file `+core_stop=`; once that exists (the checker
// found a mismatch) it ends the run there, as if the script ended.
// and writes a log of what the core does that a test checks:
//   L pc cycles additions events mem count lo hi digest
//                       an instruction finished: its counters, and of the memory it writes (mem: 1 ints,
//                       2 spikes) the words it wrote, the lowest and highest address and the
//                       order-independent digest of (address, word) over its writes (hwgen/sim/digest.py);
//                       each memory's writes are summed apart, so a CONV and the LIF chained to it
//                       (running at once, docs/core.md "Overlap") each report their own
//                       then its memory traffic: the words read / written per memory, in the order of
//                       hwgen.core.top.TRAFFIC_COUNTERS (program, pixels, spikes, spikes, ints, ints, ...)
//                       then the instruction's weight stalls (cycles the accumulator held an operation
//                       whose streamed weights were not in; 0 without external weights)
//   D cycles            an image finished (start .. done)
//   M requests bad      external weights, before each D: the memory model's requests so far and the
//                       malformed ones among them (length 0 or > BURST, or past the image's words)
//   H pc cycles         watchdog: no instruction finished for `core_watchdog` cycles
// and, with `+core_trace=1` (every instruction) or `+core_trace=2 +core_trace_pc=P` (instruction P),
// every write itself:
//   I pc addr data      a write into the int memory (while running), by instruction pc
//   S pc addr data      a write into the spike memory
// With `+core_waves=FILE +core_wave_image=N +core_wave_from=A +core_wave_to=B` (a simulator built with
// tracing) it dumps every signal into FILE from the start of instruction A of image N to the end of
// instruction B, then logs `W pc cycles` and ends the run there (Verilator ignores $dumpoff: the window
// is closed by ending the simulation).
//
// With CORE_WEIGHTS_EXTERNAL defined (core_weights_external.sv, listed first for a config with
// `accumulator.weights: external`) the core has no weight memory: the script's weight words (op 3)
// are written into `core_weights.hex` in the run folder, which harness_extmem loads as the first
// image starts and serves the core's weight_read stream from, with `+core_mem_latency=` cycles
// (default 100) from a request to its first word and `+core_mem_bandwidth=` words per cycle
// (1 or 2, default 1).
`default_nettype none

module core_harness #(
    parameter int SEL_W = 3,
    parameter int ADDR_W = 20,
    parameter int DATA_W = 512,
    parameter int PC_W = 8,
    parameter int INT_W = 192,
`ifdef CORE_WEIGHTS_EXTERNAL
    // the weight read stream: a word of WORD_W bits, PORT_WORDS per beat, W_ADDR_W-bit addresses
    parameter int WORD_W = 64, PORT_WORDS = 1, W_ADDR_W = 17, LEN_W = 5, CNT_W = 1, BURST = 16,
`endif
    parameter int LANES = 8
) (
    input  wire rst,
    input  wire go,
    output logic finished,
    output logic [31:0] images
);
    // The harness makes its own clock (Verilator --timing): the simulator needs no callback from
    // cocotb each half cycle. cocotb drives rst and go between edges; the reset reaches the core
    // (and the memory model) through a register, so a change of it does not evaluate the design
    // outside a clock edge.
    logic clk;
    initial begin
        clk = 1'b0;
        forever #5 clk = ~clk;
    end
    logic rst_q;
    always_ff @(posedge clk) rst_q <= rst;

    logic load_en, start;
    logic [SEL_W-1:0] load_sel;
    logic [ADDR_W-1:0] load_addr;
    logic [DATA_W-1:0] load_data;
    wire busy, done, int_en, spk_en, layer_done, layer_spikes;
    wire [ADDR_W-1:0] int_addr, spk_addr;
    wire [INT_W-1:0] int_data;
    wire [LANES-1:0] spk_data;
    wire [PC_W-1:0] pc, int_pc, spk_pc;
    wire [39:0] l_cycles, l_additions, l_events, l_weight_stalls;
    // memory traffic of the finishing instruction, in the order of hwgen.core.top.TRAFFIC_COUNTERS
    wire [39:0] t_program_read, t_pixels_read, t_spikes_read, t_spikes_write, t_ints_read, t_ints_write,
        t_weights_read, t_biases_read, t_accumulators_read, t_accumulators_write, t_membranes_read,
        t_membranes_write, t_thresholds_read, t_kv_read, t_kv_write;

`ifdef CORE_WEIGHTS_EXTERNAL
    logic req_valid, req_ready, resp_valid, resp_ready;
    logic [W_ADDR_W+LEN_W-1:0] req_payload;
    logic [PORT_WORDS*WORD_W+CNT_W-1:0] resp_payload;
    logic mem_load, weights_in;            // weights_in: the weight file is written and loaded
    logic [31:0] mem_words, mem_requests, mem_bad_requests;
    logic [15:0] mem_latency;
    logic [1:0] mem_bandwidth;
    integer weight_file;
    initial begin
        if (!$value$plusargs("core_mem_latency=%d", mem_latency)) mem_latency = 16'd100;
        if (!$value$plusargs("core_mem_bandwidth=%d", mem_bandwidth)) mem_bandwidth = 2'd1;
        weight_file = $fopen("core_weights.hex", "w");
    end
    harness_extmem #(.WORD_W(WORD_W), .PORT_WORDS(PORT_WORDS), .ADDR_W(W_ADDR_W), .LEN_W(LEN_W), .CNT_W(CNT_W),
                     .BURST(BURST), .DEPTH(1 << W_ADDR_W), .FILE("core_weights.hex")) memory (
        .clk(clk), .rst(rst_q), .load(mem_load), .go(go), .latency(mem_latency), .bandwidth(mem_bandwidth),
        .words(mem_words), .req_valid(req_valid), .req_ready(req_ready), .req_payload(req_payload),
        .resp_valid(resp_valid), .resp_ready(resp_ready), .resp_payload(resp_payload),
        .requests(mem_requests), .bad_requests(mem_bad_requests));
`else
    assign l_weight_stalls = '0;
`endif

    core dut (
        .clk(clk), .rst(rst_q), .start(start), .busy(busy), .done(done),
        .load__en(load_en), .load__sel(load_sel), .load__addr(load_addr), .load__data(load_data),
        .int_write__en(int_en), .int_write__pc(int_pc), .int_write__addr(int_addr), .int_write__data(int_data),
        .spike_write__en(spk_en), .spike_write__pc(spk_pc), .spike_write__addr(spk_addr), .spike_write__data(spk_data),
        .layer__done(layer_done), .layer__pc(pc), .layer__spikes(layer_spikes), .layer__cycles(l_cycles),
        .layer__additions(l_additions), .layer__events(l_events),
        .layer__traffic__program_read(t_program_read), .layer__traffic__pixels_read(t_pixels_read),
        .layer__traffic__spikes_read(t_spikes_read), .layer__traffic__spikes_write(t_spikes_write),
        .layer__traffic__ints_read(t_ints_read), .layer__traffic__ints_write(t_ints_write),
        .layer__traffic__weights_read(t_weights_read), .layer__traffic__biases_read(t_biases_read),
        .layer__traffic__accumulators_read(t_accumulators_read), .layer__traffic__accumulators_write(t_accumulators_write),
        .layer__traffic__membranes_read(t_membranes_read), .layer__traffic__membranes_write(t_membranes_write),
        .layer__traffic__thresholds_read(t_thresholds_read), .layer__traffic__kv_read(t_kv_read),
        .layer__traffic__kv_write(t_kv_write)
`ifdef CORE_WEIGHTS_EXTERNAL
        , .layer__weight_stalls(l_weight_stalls),
        .weight_read__request__valid(req_valid), .weight_read__request__ready(req_ready),
        .weight_read__request__payload(req_payload), .weight_read__response__valid(resp_valid),
        .weight_read__response__ready(resp_ready), .weight_read__response__payload(resp_payload)
`endif
    );


    string script_file, log_file, stop_file, wave_file;
    logic [63:0] watchdog;
    integer script, log, trace, trace_pc, wave_image, wave_from, wave_to;
    logic dumping;
    initial begin
        if (!$value$plusargs("core_script=%s", script_file)) script_file = "core_script.txt";
        if (!$value$plusargs("core_log=%s", log_file)) log_file = "core_log.txt";
        if (!$value$plusargs("core_watchdog=%d", watchdog)) watchdog = 64'd10000000;
        if (!$value$plusargs("core_stop=%s", stop_file)) stop_file = "";
        if (!$value$plusargs("core_trace=%d", trace)) trace = 0;
        if (!$value$plusargs("core_trace_pc=%d", trace_pc)) trace_pc = -1;
        if (!$value$plusargs("core_waves=%s", wave_file)) wave_file = "";
        if (!$value$plusargs("core_wave_image=%d", wave_image)) wave_image = 0;
        if (!$value$plusargs("core_wave_from=%d", wave_from)) wave_from = 0;
        if (!$value$plusargs("core_wave_to=%d", wave_to)) wave_to = -1;
        script = $fopen(script_file, "r");
        log = $fopen(log_file, "w");
    end

    typedef enum logic [1:0] {IDLE, READ, RUN, DONE} state_t;
    state_t state;
    typedef struct packed {
        logic [31:0] op;
        logic [31:0] sel;
        logic [ADDR_W-1:0] addr;
        logic [DATA_W-1:0] word;
    } line_t;

    // The next script line; at the end of the file an END line.
    function automatic line_t next_line();
        logic [31:0] op = 32'd2, sel = '0;
        logic [ADDR_W-1:0] addr = '0;
        logic [DATA_W-1:0] word = '0;
        if (!$feof(script)) void'($fscanf(script, "%h %h %h %h\n", op, sel, addr, word));
        return '{op: op, sel: sel, addr: addr, word: word};
    endfunction
    logic [63:0] cycles, quiet;

    // ---- digests of the writes (hwgen/sim/digest.py computes the same from golden tensors) ----
    localparam int CH_I = (INT_W + 63) / 64;      // 64-bit chunks of an int memory word
    localparam int CH_S = (LANES + 63) / 64;      // ... of a spike memory word
    function automatic logic [63:0] mix64(input logic [63:0] x);   // splitmix64's finaliser
        logic [63:0] z;
        z = x + 64'h9E3779B97F4A7C15;
        z = (z ^ (z >> 30)) * 64'hBF58476D1CE4E5B9;
        z = (z ^ (z >> 27)) * 64'h94D049BB133111EB;
        return z ^ (z >> 31);
    endfunction
    localparam int CH_W = 64 * (CH_I > CH_S ? CH_I : CH_S);
    // a written word's hash: its address, then each of its `chunks` 64-bit chunks (zero-extended)
    function automatic logic [63:0] word_hash(input logic [ADDR_W-1:0] a, input logic [CH_W-1:0] p, input int chunks);
        logic [63:0] h;
        h = mix64(64'(a));
        for (int c = 0; c < chunks; c++) h = mix64(h ^ p[c*64 +: 64]);
        return h;
    endfunction
    // one more write into the running instruction's count, address range and digest
    function automatic void note_write(input logic [ADDR_W-1:0] a, input logic [63:0] h, inout logic [31:0] n,
                                       inout logic [ADDR_W-1:0] lo, inout logic [ADDR_W-1:0] hi, inout logic [63:0] sum);
        if (n == 0 || a < lo) lo = a;
        if (n == 0 || a > hi) hi = a;
        n = n + 1;
        sum = sum + h;
    endfunction
    // the writes so far of the instruction writing each memory (index 0 ints, 1 spikes)
    logic [31:0] w_count [2];
    logic [ADDR_W-1:0] w_lo [2], w_hi [2];
    logic [63:0] w_sum [2];
    function automatic logic traced(input logic [PC_W-1:0] writer);
        return trace == 1 || (trace == 2 && int'(writer) == trace_pc);
    endfunction

    task automatic close_files();
        $fclose(script);
        $fclose(log);
    endtask

    // The checker asked to stop: the stop file exists.
    function automatic logic stop_requested();
        integer f;
        if (stop_file == "") return 1'b0;
        f = $fopen(stop_file, "r");
        if (f == 0) return 1'b0;
        $fclose(f);
        return 1'b1;
    endfunction

    always_ff @(posedge clk) begin
        load_en <= 1'b0;
        start <= 1'b0;
`ifdef CORE_WEIGHTS_EXTERNAL
        mem_load <= 1'b0;
`endif
        if (rst) begin
`ifdef CORE_WEIGHTS_EXTERNAL
            mem_words <= '0;
            weights_in <= 1'b0;
`endif
            state <= IDLE;
            finished <= 1'b0;
            dumping <= 1'b0;
        end else if (go) begin
            state <= READ;
            finished <= 1'b0;
            images <= '0;
        end else begin
            case (state)
                READ: begin : read_line
                    line_t line;
                    line = next_line();
`ifdef CORE_WEIGHTS_EXTERNAL
                    if (line.op == 3) begin      // a word of the weight memory model
                        $fwrite(weight_file, "@%0h %h\n", line.addr, line.word[WORD_W-1:0]);
                        if (32'(line.addr) >= mem_words) mem_words <= 32'(line.addr) + 1;
                    end else
`endif
                    if (line.op == 0) begin
                        load_en <= 1'b1;
                        load_sel <= line.sel[SEL_W-1:0];
                        load_addr <= line.addr;
                        load_data <= line.word;
                    end else if (line.op == 1 && !stop_requested()) begin
`ifdef CORE_WEIGHTS_EXTERNAL
                        if (!weights_in) begin     // the weight words are in: the memory loads them
                            $fclose(weight_file);
                            weights_in <= 1'b1;
                            mem_load <= 1'b1;
                        end
`endif
                        start <= 1'b1;
                        cycles <= '0;
                        quiet <= '0;
                        for (int i = 0; i < 2; i++) {w_count[i], w_lo[i], w_hi[i], w_sum[i]} <= '0;
                        state <= RUN;
                    end else begin
                        close_files();
                        finished <= 1'b1;
                        state <= DONE;
                    end
                end
                RUN: begin
                    cycles <= cycles + 1;
                    quiet <= layer_done ? '0 : quiet + 1;
                    if (wave_file != "" && !dumping && int'(images) == wave_image && int'(pc) == wave_from) begin
                        $dumpfile(wave_file);
                        $dumpvars(0, core_harness);
                        dumping <= 1'b1;
                    end
                    if (dumping && layer_done && int'(pc) == wave_to) begin
                        $fwrite(log, "W %0h %0d\n", pc, cycles);
                        close_files();
                        finished <= 1'b1;
                        state <= DONE;
                    end else if (done) begin
`ifdef CORE_WEIGHTS_EXTERNAL
                        $fwrite(log, "M %0d %0d\n", mem_requests, mem_bad_requests);
`endif
                        $fwrite(log, "D %0d\n", cycles + 1);
                        images <= images + 1;
                        state <= READ;
                    end else if (quiet > watchdog) begin
                        $fwrite(log, "H %0h %0d\n", pc, cycles);
                        close_files();
                        finished <= 1'b1;
                        state <= DONE;
                    end
                end
                default: ;
            endcase
            if (state == RUN) begin : account
                logic [31:0] n [2];
                logic [ADDR_W-1:0] lo [2], hi [2];
                logic [63:0] sum [2];
                int k;
                for (int i = 0; i < 2; i++) {n[i], lo[i], hi[i], sum[i]} = {w_count[i], w_lo[i], w_hi[i], w_sum[i]};
                if (int_en) begin
                    note_write(int_addr, word_hash(int_addr, CH_W'(int_data), CH_I), n[0], lo[0], hi[0], sum[0]);
                    if (traced(int_pc)) $fwrite(log, "I %0h %0h %h\n", int_pc, int_addr, int_data);
                end
                if (spk_en) begin
                    note_write(spk_addr, word_hash(spk_addr, CH_W'(spk_data), CH_S), n[1], lo[1], hi[1], sum[1]);
                    if (traced(spk_pc)) $fwrite(log, "S %0h %0h %h\n", spk_pc, spk_addr, spk_data);
                end
                if (layer_done) begin
                    k = int'(layer_spikes);
                    $fwrite(log, "L %0h %0d %0d %0d %0d %0d %0h %0h %0h %0d %0d %0d %0d %0d %0d %0d %0d %0d %0d %0d %0d %0d %0d %0d %0d\n", pc, l_cycles, l_additions,
                            l_events, k + 1, n[k], lo[k], hi[k], sum[k],
                            t_program_read, t_pixels_read, t_spikes_read, t_spikes_write,
                            t_ints_read, t_ints_write, t_weights_read, t_biases_read,
                            t_accumulators_read, t_accumulators_write, t_membranes_read,
                            t_membranes_write, t_thresholds_read, t_kv_read, t_kv_write, l_weight_stalls);
                    {n[k], lo[k], hi[k], sum[k]} = '0;
                end
                for (int i = 0; i < 2; i++) {w_count[i], w_lo[i], w_hi[i], w_sum[i]} <= {n[i], lo[i], hi[i], sum[i]};
            end
        end
    end

    wire unused = &{1'b0, busy};
endmodule

`default_nettype wire

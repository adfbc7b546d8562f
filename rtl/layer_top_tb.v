// SPDX-License-Identifier: Apache-2.0
// Language: Verilog 2005 (simulation only: $readmemh / $writememh, plusargs, hierarchical names)

`resetall
`timescale 1ns / 1ps
`default_nettype none

/*
 * layer_top_tb: simulation wrapper of layer_top for the cocotb bench (rtl_tests/layer_top_tests.py)
 * and the package's layer runner (refmodel/rtl_layer.py, Icarus or Verilator).
 * NOT synthesisable; excluded from the Verilator lint (rtl/README.md). No delays: everything
 * happens at clock edges, so 2-state and event-driven simulators run it alike.
 *
 * The parameters are layer_top's (layer_top_params.vh, included) and are passed through
 * unchanged (layer_top_pass.vh). Plusargs:
 *   +X_FILE=<path>      the layer input x ($readmemh, SEQ*D_MODEL words of ACT_W bits, row-major)
 *   +DUMP_DIR=<dir>     where the dumps go (existing directory)
 *   +PROGRESS=<cycles>  optional: print "RM_PROGRESS <cycles>" every that many cycles and
 *                       "RM_STAGE <stage> <cycle>" at every stage change (flushed at once)
 * On a `start` pulse the wrapper streams x into s_* (one word per clock, or with pseudo-random
 * idle cycles when `stall` is high), collects out from m_* (pseudo-random backpressure when
 * `stall` is high), and in the cycle after the last output word writes, with $writememh, every
 * stage buffer of the DUT as <DUMP_DIR>/<tensor>.hex (x ln1 q k v scores probs attn proj res1 ln2
 * up act down out, the DUT's own layouts) plus the collected stream as out_stream.hex, and
 * <DUMP_DIR>/stages.txt ("<stage> <cycle>" at every stage change, cycles counted from start).
 * Then `done` goes high (until the next start) and `cycles` holds start-to-done clocks.
 */
module layer_top_tb #(
`include "layer_top_params.vh"
) (
    input  wire        clk,
    input  wire        rst,
    input  wire        start,    // pulse (in LOAD): stream x, run the layer, collect and dump
    input  wire        stall,    // 1: pseudo-random source idle cycles and sink backpressure
    output reg         done,
    output reg  [39:0] cycles,
    output wire [4:0]  stage,
    output wire        err
);

    localparam integer N_SD = SEQ * D_MODEL;

    reg [8*1024-1:0] x_file;
    reg [8*1024-1:0] dump_dir;
    reg [39:0]       progress_every;
    // one bit wider than a word: the last word's top bit is a sentinel the file clears (a short
    // file leaves it set, in 2-state and 4-state simulators alike)
    reg [ACT_W:0]    x_tb   [0:N_SD-1];
    reg [ACT_W-1:0]  out_tb [0:N_SD-1];

    initial begin
        if (!$value$plusargs("X_FILE=%s", x_file)) begin
            $error("%m: +X_FILE=<path> is required");
            $finish;
        end
        if (!$value$plusargs("DUMP_DIR=%s", dump_dir)) begin
            $error("%m: +DUMP_DIR=<dir> is required");
            $finish;
        end
        if (!$value$plusargs("PROGRESS=%d", progress_every)) begin
            progress_every = 40'd0;
        end
        x_tb[N_SD-1] = {1'b1, {ACT_W{1'b0}}};
        $readmemh(x_file, x_tb);
        if (x_tb[N_SD-1][ACT_W] != 1'b0) begin
            $error("%m: %0s did not load %0d words", x_file, N_SD);
            $finish;
        end
    end

    // ---- pseudo-random stalls: 16-bit Fibonacci LFSR --------------------------------------------
    reg [15:0] lfsr;
    always @(posedge clk) begin
        lfsr <= {lfsr[14:0], lfsr[15] ^ lfsr[13] ^ lfsr[12] ^ lfsr[10]};
        if (rst) lfsr <= 16'hace1;
    end
    wire src_idle  = stall && lfsr[0] && lfsr[3];      // ~25 % of cycles
    wire sink_hold = stall && lfsr[5] && lfsr[9];      // ~25 % of cycles

    // ---- source: x into s_* (valid holds until the transfer) -----------------------------------
    reg         src_run;
    reg         s_valid_r;
    reg  [31:0] src_ptr;
    wire        s_ready;
    wire        s_fire = s_valid_r && s_ready;

    always @(posedge clk) begin
        if (s_fire) begin
            src_ptr <= src_ptr + 1;
            if (src_ptr == N_SD - 1) src_run <= 1'b0;
        end
        if (!s_valid_r || s_ready) begin
            // present the next word unless the source idles (or everything was sent)
            s_valid_r <= src_run && !(s_fire && src_ptr == N_SD - 1) && !src_idle;
        end
        if (start) begin
            src_run   <= 1'b1;
            src_ptr   <= 0;
            s_valid_r <= 1'b0;
        end
        if (rst) begin
            src_run   <= 1'b0;
            s_valid_r <= 1'b0;
            src_ptr   <= 0;
        end
    end

    // ---- sink: out from m_* ----------------------------------------------------------------------
    wire [ACT_W-1:0] m_data;
    wire             m_valid, m_last;
    wire             m_ready = !sink_hold;
    reg  [31:0]      out_ptr;

    // ---- DUT ---------------------------------------------------------------------------------------
    wire [ACT_W:0] x_word = x_tb[src_ptr];

    layer_top #(
`include "layer_top_pass.vh"
    ) dut (
        .clk(clk), .rst(rst),
        .s_data(x_word[ACT_W-1:0]), .s_valid(s_valid_r), .s_ready(s_ready), .s_last(src_ptr == N_SD - 1),
        .m_data(m_data), .m_valid(m_valid), .m_ready(m_ready), .m_last(m_last),
        .stage(stage), .err(err)
    );

    // ---- collect, count, dump ------------------------------------------------------------------------
    reg [4:0] stage_q;
    integer   fd;
    reg       running;
    reg       dump_pending;
    reg [39:0] prog_cnt;          // cycles since the last RM_PROGRESS line
    reg [8*1100-1:0] fname;

    task dump;
        begin
            $sformat(fname, "%0s/x.hex", dump_dir);      $writememh(fname, dut.x_mem);
            $sformat(fname, "%0s/ln1.hex", dump_dir);    $writememh(fname, dut.ln1_mem);
            $sformat(fname, "%0s/q.hex", dump_dir);      $writememh(fname, dut.q_mem);
            $sformat(fname, "%0s/k.hex", dump_dir);      $writememh(fname, dut.k_mem);
            $sformat(fname, "%0s/v.hex", dump_dir);      $writememh(fname, dut.v_mem);
            $sformat(fname, "%0s/scores.hex", dump_dir); $writememh(fname, dut.scores_mem);
            $sformat(fname, "%0s/probs.hex", dump_dir);  $writememh(fname, dut.probs_mem);
            $sformat(fname, "%0s/attn.hex", dump_dir);   $writememh(fname, dut.attn_mem);
            $sformat(fname, "%0s/proj.hex", dump_dir);   $writememh(fname, dut.proj_mem);
            $sformat(fname, "%0s/res1.hex", dump_dir);   $writememh(fname, dut.res1_mem);
            $sformat(fname, "%0s/ln2.hex", dump_dir);    $writememh(fname, dut.ln2_mem);
            $sformat(fname, "%0s/up.hex", dump_dir);     $writememh(fname, dut.up_mem);
            $sformat(fname, "%0s/act.hex", dump_dir);    $writememh(fname, dut.act_mem);
            $sformat(fname, "%0s/down.hex", dump_dir);   $writememh(fname, dut.down_mem);
            $sformat(fname, "%0s/out.hex", dump_dir);    $writememh(fname, dut.out_mem);
            $sformat(fname, "%0s/out_stream.hex", dump_dir); $writememh(fname, out_tb);
        end
    endtask

    always @(posedge clk) begin
        if (running) begin
            cycles <= cycles + 1;
            if (stage != stage_q) begin
                $fwrite(fd, "%0d %0d\n", stage, cycles + 1);
                if (progress_every != 0) begin
                    $display("RM_STAGE %0d %0d", stage, cycles + 1);
                    $fflush;
                end
            end
            if (progress_every != 0) begin
                if (prog_cnt == progress_every) begin
                    $display("RM_PROGRESS %0d", cycles + 1);
                    $fflush;
                    prog_cnt <= 40'd1;
                end else begin
                    prog_cnt <= prog_cnt + 40'd1;
                end
            end
        end
        stage_q <= stage;
        // the last output word landed in out_tb at the previous edge: dump now
        if (dump_pending) begin
            dump;
            dump_pending <= 1'b0;
            done         <= 1'b1;
        end
        if (m_valid && m_ready) begin
            out_tb[out_ptr] <= m_data;
            out_ptr <= out_ptr + 1;
            if (m_last) begin
                running      <= 1'b0;
                dump_pending <= 1'b1;
                $fwrite(fd, "end %0d\n", cycles + 1);
                $fclose(fd);
            end
        end
        if (start) begin
            running      <= 1'b1;
            done         <= 1'b0;
            dump_pending <= 1'b0;
            cycles       <= 0;
            prog_cnt     <= 40'd1;
            out_ptr      <= 0;
            $sformat(fname, "%0s/stages.txt", dump_dir);
            fd = $fopen(fname, "w");
            $fwrite(fd, "%0d 0\n", stage);
        end
        if (rst) begin
            if (running) $fclose(fd);                   // a run abandoned by the reset
            running      <= 1'b0;
            done         <= 1'b0;
            dump_pending <= 1'b0;
            cycles       <= 0;
            out_ptr      <= 0;
        end
    end

endmodule

`resetall

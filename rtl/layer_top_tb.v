// SPDX-License-Identifier: Apache-2.0
// Language: Verilog 2005 (simulation only: $readmemh / $writememh, plusargs, hierarchical names)

`resetall
`timescale 1ns / 1ps
`default_nettype none

/*
 * layer_top_tb: simulation wrapper of layer_top for the cocotb bench (rtl_tests/layer_top_tests.py).
 * NOT synthesisable; excluded from the Verilator lint (rtl/README.md).
 *
 * The parameters are layer_top's, passed through unchanged (the list is a verbatim copy of
 * layer_top's parameter list: keep the two in sync). Plusargs:
 *   +X_FILE=<path>    the layer input x ($readmemh, SEQ*D_MODEL words of ACT_W bits, row-major)
 *   +DUMP_DIR=<dir>   where the dumps go (existing directory)
 * On a `start` pulse the wrapper streams x into s_* (one word per clock, or with pseudo-random
 * idle cycles when `stall` is high), collects out from m_* (pseudo-random backpressure when
 * `stall` is high), and after the last output word writes, with $writememh, every stage buffer of
 * the DUT as <DUMP_DIR>/<tensor>.hex (x ln1 q k v scores probs attn proj res1 ln2 up act down
 * out, the DUT's own layouts) plus the collected stream as out_stream.hex, and
 * <DUMP_DIR>/stages.txt ("<stage> <cycle>" at every stage change, cycles counted from start).
 * Then `done` goes high (until the next start) and `cycles` holds start-to-done clocks.
 */
module layer_top_tb #(
    // ---- shape (gpt2: pre-LN, causal, biases, GELU MLP) --------------------------------------
    // model width, >= 2
    parameter integer D_MODEL = 64,
    // attention heads, D_MODEL = N_HEADS * HEAD_DIM
    parameter integer N_HEADS = 4,
    // MLP hidden width, >= 2
    parameter integer D_FF = 256,
    // sequence length (tokens), >= 2
    parameter integer SEQ = 16,
    // head width
    parameter integer HEAD_DIM = D_MODEL / N_HEADS,
    // MAC products per beat (1 = one multiplier), >= 1; 1 when ACC_SAT = 1
    parameter integer LANES = 1,

    // ---- code widths ------------------------------------------------------------------------
    // every activation tensor except probs (x ln1 q k v scores attn proj res1 ln2 up act down out)
    parameter integer ACT_W = 16,
    // probs code width (unsigned), OUT_W of the softmax
    parameter integer PROB_W = 16,
    // weight matrix code width (wq wk wv wo w_up w_down), signed
    parameter integer WGT_W = 8,
    // bias code width (bq bk bv bo b_up b_down), signed
    parameter integer BIAS_W = 16,

    // ---- MAC and requantiser (manifest units.<t>.mac / .requant) ------------------------------
    // accumulator width (ACC_W of every MAC stage)
    parameter integer ACC_W = 40,
    // accumulator overflow: 0 wrap, 1 saturate at every beat
    parameter integer ACC_SAT = 0,
    // rounding of every requantising shift: 0 floor, 1 half_up, 2 rne
    parameter integer ROUND_MODE = 2,
    // q: requant right shift (units.q.mac.SHIFT), 0..RQ_SHIFT
    parameter integer Q_SHIFT = 10,
    // q: bias left shift to the accumulator LSB (units.q.mac.BIAS_LSH), >= 0
    parameter integer Q_BIAS_LSH = 6,
    // k: requant right shift
    parameter integer K_SHIFT = 10,
    // k: bias left shift
    parameter integer K_BIAS_LSH = 6,
    // v: requant right shift
    parameter integer V_SHIFT = 10,
    // v: bias left shift
    parameter integer V_BIAS_LSH = 6,
    // proj: requant right shift
    parameter integer PROJ_SHIFT = 9,
    // proj: bias left shift
    parameter integer PROJ_BIAS_LSH = 5,
    // up: requant right shift
    parameter integer UP_SHIFT = 8,
    // up: bias left shift
    parameter integer UP_BIAS_LSH = 6,
    // down: requant right shift
    parameter integer DOWN_SHIFT = 9,
    // down: bias left shift
    parameter integer DOWN_BIAS_LSH = 5,
    // attention mix (probs @ v) requant shift (no bias)
    parameter integer MIX_SHIFT = 13,
    // scores: requant multiplier (1/sqrt(HEAD_DIM) and the format change), 1 .. 2^31-1
    parameter integer SC_MULT = 32768,
    // scores: requant right shift (units.scores.requant.SHIFT)
    parameter integer SC_SHIFT = 25,

    // ---- softmax (manifest units.probs.softmax; IN_W = ACT_W, OUT_W = PROB_W) ----------------
    // scores fraction bits (softmax_row IN_F)
    parameter integer SM_IN_F = 8,
    // softmax row buffer depth, >= SEQ (the model: next power of two)
    parameter integer SM_N_MAX = 16,
    // exp2 LUT index bits (softmax_row LUT_BITS)
    parameter integer SM_LUT_BITS = 8,
    // exp2 LUT word width (softmax_row LUT_W)
    parameter integer SM_LUT_W = 16,
    // guard bits below the LUT word (softmax_row GUARD)
    parameter integer SM_GUARD = 8,
    // probs fraction bits (softmax_row OUT_F)
    parameter integer SM_OUT_F = 15,
    // fraction bits of log2(e) (softmax_row LOG2E_F)
    parameter integer SM_LOG2E_F = 14,
    // round(log2(e) * 2^SM_LOG2E_F) (softmax_row LOG2E)
    parameter integer SM_LOG2E = 23637,
    // reciprocal scale 2^K / sum (softmax_row K), <= 62
    parameter integer SM_K = 43,

    // ---- activation (manifest units.act): up >> ACT_SHIFT (ROUND_MODE, saturate) to s<ACT_IN_W>,
    //      then the table (2^ACT_IN_W words of ACT_W bits) ----------------------------------------
    parameter integer ACT_IN_W = 14,
    // up frac - table input frac: rounding right shift of up, >= 0
    parameter integer ACT_SHIFT = 2,

    // ---- norms (manifest units.ln1/ln2.norm_params; D = D_MODEL, IN_W = OUT_W = ACT_W, RMS = 0)
    // LN1 (layernorm SHIFT): SLaNC shift: x1 = round_half_up(x / 2^SHIFT)
    parameter integer LN1_SHIFT = 0,
    // LN1 (layernorm MEAN_G): mean guard bits
    parameter integer LN1_MEAN_G = 4,
    // LN1 (layernorm EPS_G): extra eps fraction bit pairs
    parameter integer LN1_EPS_G = 0,
    // LN1 (layernorm EPS): eps / s^2 as an integer code (NormParams eps)
    parameter [63:0]  LN1_EPS = 64'd168,
    // LN1 (layernorm N_F): fraction bits of the normalised value
    parameter integer LN1_N_F = 12,
    // LN1 (layernorm RSQ_K): rsqrt scale K
    parameter integer LN1_RSQ_K = 31,
    // LN1 (layernorm RSQ_W): rsqrt input width cap
    parameter integer LN1_RSQ_W = 24,
    // LN1 (layernorm SQD_F): fraction bits of sqrt(D)
    parameter integer LN1_SQD_F = 21,
    // LN1 (layernorm SQD): round(sqrt(D) * 2^SQD_F)
    parameter [63:0]  LN1_SQD = 64'd16777216,
    // LN1 (layernorm G_W): gamma width
    parameter integer LN1_G_W = 16,
    // LN1 (layernorm G_F): gamma fraction bits
    parameter integer LN1_G_F = 13,
    // LN1 (layernorm B_W): beta width
    parameter integer LN1_B_W = 16,
    // LN1 (layernorm B_F): beta fraction bits
    parameter integer LN1_B_F = 13,
    // LN1 (layernorm OUT_F): output fraction bits
    parameter integer LN1_OUT_F = 11,
    // LN1 (layernorm OUT_RNE): output rounding: 1 rne, 0 half_up
    parameter integer LN1_OUT_RNE = 1,
    // LN2 (layernorm SHIFT): SLaNC shift: x1 = round_half_up(x / 2^SHIFT)
    parameter integer LN2_SHIFT = 4,
    // LN2 (layernorm MEAN_G): mean guard bits
    parameter integer LN2_MEAN_G = 4,
    // LN2 (layernorm EPS_G): extra eps fraction bit pairs
    parameter integer LN2_EPS_G = 0,
    // LN2 (layernorm EPS): eps / s^2 as an integer code (NormParams eps)
    parameter [63:0]  LN2_EPS = 64'd1,
    // LN2 (layernorm N_F): fraction bits of the normalised value
    parameter integer LN2_N_F = 12,
    // LN2 (layernorm RSQ_K): rsqrt scale K
    parameter integer LN2_RSQ_K = 31,
    // LN2 (layernorm RSQ_W): rsqrt input width cap
    parameter integer LN2_RSQ_W = 24,
    // LN2 (layernorm SQD_F): fraction bits of sqrt(D)
    parameter integer LN2_SQD_F = 21,
    // LN2 (layernorm SQD): round(sqrt(D) * 2^SQD_F)
    parameter [63:0]  LN2_SQD = 64'd16777216,
    // LN2 (layernorm G_W): gamma width
    parameter integer LN2_G_W = 16,
    // LN2 (layernorm G_F): gamma fraction bits
    parameter integer LN2_G_F = 13,
    // LN2 (layernorm B_W): beta width
    parameter integer LN2_B_W = 16,
    // LN2 (layernorm B_F): beta fraction bits
    parameter integer LN2_B_F = 13,
    // LN2 (layernorm OUT_F): output fraction bits
    parameter integer LN2_OUT_F = 11,
    // LN2 (layernorm OUT_RNE): output rounding: 1 rne, 0 half_up
    parameter integer LN2_OUT_RNE = 1,

    // ---- $readmemh files (absolute paths; quoted when passed with -P / -G) -------------------
    // $readmemh file: wq [D_MODEL][D_MODEL]
    parameter WQ_MEMFILE = "",
    // $readmemh file: wk
    parameter WK_MEMFILE = "",
    // $readmemh file: wv
    parameter WV_MEMFILE = "",
    // $readmemh file: wo
    parameter WO_MEMFILE = "",
    // $readmemh file: w_up [D_FF][D_MODEL]
    parameter W_UP_MEMFILE = "",
    // $readmemh file: w_down [D_MODEL][D_FF]
    parameter W_DOWN_MEMFILE = "",
    // $readmemh file: bq [D_MODEL]
    parameter BQ_MEMFILE = "",
    // $readmemh file: bk
    parameter BK_MEMFILE = "",
    // $readmemh file: bv
    parameter BV_MEMFILE = "",
    // $readmemh file: bo
    parameter BO_MEMFILE = "",
    // $readmemh file: b_up [D_FF]
    parameter B_UP_MEMFILE = "",
    // $readmemh file: b_down [D_MODEL]
    parameter B_DOWN_MEMFILE = "",
    // $readmemh file: ln1 gamma [D_MODEL]
    parameter LN1_G_MEMFILE = "",
    // $readmemh file: ln1 beta
    parameter LN1_B_MEMFILE = "",
    // $readmemh file: ln2 gamma
    parameter LN2_G_MEMFILE = "",
    // $readmemh file: ln2 beta
    parameter LN2_B_MEMFILE = "",
    // $readmemh file: softmax exp2 LUT (2^SM_LUT_BITS words)
    parameter EXP2_MEMFILE = "",
    // $readmemh file: activation table (2^ACT_IN_W words)
    parameter ACT_TABLE_MEMFILE = ""
) (
    input  wire        clk,
    input  wire        rst,
    input  wire        start,    // pulse (in LOAD): stream x, run the layer, collect and dump
    input  wire        stall,    // 1: pseudo-random source idle cycles and sink backpressure
    output reg         done,
    output reg  [31:0] cycles,
    output wire [3:0]  stage,
    output wire        err
);

    localparam integer N_SD = SEQ * D_MODEL;

    reg [8*1024-1:0] x_file;
    reg [8*1024-1:0] dump_dir;
    reg [ACT_W-1:0]  x_tb   [0:N_SD-1];
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
        $readmemh(x_file, x_tb);
        if (^x_tb[N_SD-1] === 1'bx) begin
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
    layer_top #(
        .D_MODEL(D_MODEL),
        .N_HEADS(N_HEADS),
        .D_FF(D_FF),
        .SEQ(SEQ),
        .HEAD_DIM(HEAD_DIM),
        .LANES(LANES),
        .ACT_W(ACT_W),
        .PROB_W(PROB_W),
        .WGT_W(WGT_W),
        .BIAS_W(BIAS_W),
        .ACC_W(ACC_W),
        .ACC_SAT(ACC_SAT),
        .ROUND_MODE(ROUND_MODE),
        .Q_SHIFT(Q_SHIFT),
        .Q_BIAS_LSH(Q_BIAS_LSH),
        .K_SHIFT(K_SHIFT),
        .K_BIAS_LSH(K_BIAS_LSH),
        .V_SHIFT(V_SHIFT),
        .V_BIAS_LSH(V_BIAS_LSH),
        .PROJ_SHIFT(PROJ_SHIFT),
        .PROJ_BIAS_LSH(PROJ_BIAS_LSH),
        .UP_SHIFT(UP_SHIFT),
        .UP_BIAS_LSH(UP_BIAS_LSH),
        .DOWN_SHIFT(DOWN_SHIFT),
        .DOWN_BIAS_LSH(DOWN_BIAS_LSH),
        .MIX_SHIFT(MIX_SHIFT),
        .SC_MULT(SC_MULT),
        .SC_SHIFT(SC_SHIFT),
        .SM_IN_F(SM_IN_F),
        .SM_N_MAX(SM_N_MAX),
        .SM_LUT_BITS(SM_LUT_BITS),
        .SM_LUT_W(SM_LUT_W),
        .SM_GUARD(SM_GUARD),
        .SM_OUT_F(SM_OUT_F),
        .SM_LOG2E_F(SM_LOG2E_F),
        .SM_LOG2E(SM_LOG2E),
        .SM_K(SM_K),
        .ACT_IN_W(ACT_IN_W),
        .ACT_SHIFT(ACT_SHIFT),
        .LN1_SHIFT(LN1_SHIFT),
        .LN1_MEAN_G(LN1_MEAN_G),
        .LN1_EPS_G(LN1_EPS_G),
        .LN1_EPS(LN1_EPS),
        .LN1_N_F(LN1_N_F),
        .LN1_RSQ_K(LN1_RSQ_K),
        .LN1_RSQ_W(LN1_RSQ_W),
        .LN1_SQD_F(LN1_SQD_F),
        .LN1_SQD(LN1_SQD),
        .LN1_G_W(LN1_G_W),
        .LN1_G_F(LN1_G_F),
        .LN1_B_W(LN1_B_W),
        .LN1_B_F(LN1_B_F),
        .LN1_OUT_F(LN1_OUT_F),
        .LN1_OUT_RNE(LN1_OUT_RNE),
        .LN2_SHIFT(LN2_SHIFT),
        .LN2_MEAN_G(LN2_MEAN_G),
        .LN2_EPS_G(LN2_EPS_G),
        .LN2_EPS(LN2_EPS),
        .LN2_N_F(LN2_N_F),
        .LN2_RSQ_K(LN2_RSQ_K),
        .LN2_RSQ_W(LN2_RSQ_W),
        .LN2_SQD_F(LN2_SQD_F),
        .LN2_SQD(LN2_SQD),
        .LN2_G_W(LN2_G_W),
        .LN2_G_F(LN2_G_F),
        .LN2_B_W(LN2_B_W),
        .LN2_B_F(LN2_B_F),
        .LN2_OUT_F(LN2_OUT_F),
        .LN2_OUT_RNE(LN2_OUT_RNE),
        .WQ_MEMFILE(WQ_MEMFILE),
        .WK_MEMFILE(WK_MEMFILE),
        .WV_MEMFILE(WV_MEMFILE),
        .WO_MEMFILE(WO_MEMFILE),
        .W_UP_MEMFILE(W_UP_MEMFILE),
        .W_DOWN_MEMFILE(W_DOWN_MEMFILE),
        .BQ_MEMFILE(BQ_MEMFILE),
        .BK_MEMFILE(BK_MEMFILE),
        .BV_MEMFILE(BV_MEMFILE),
        .BO_MEMFILE(BO_MEMFILE),
        .B_UP_MEMFILE(B_UP_MEMFILE),
        .B_DOWN_MEMFILE(B_DOWN_MEMFILE),
        .LN1_G_MEMFILE(LN1_G_MEMFILE),
        .LN1_B_MEMFILE(LN1_B_MEMFILE),
        .LN2_G_MEMFILE(LN2_G_MEMFILE),
        .LN2_B_MEMFILE(LN2_B_MEMFILE),
        .EXP2_MEMFILE(EXP2_MEMFILE),
        .ACT_TABLE_MEMFILE(ACT_TABLE_MEMFILE)
    ) dut (
        .clk(clk), .rst(rst),
        .s_data(x_tb[src_ptr]), .s_valid(s_valid_r), .s_ready(s_ready), .s_last(src_ptr == N_SD - 1),
        .m_data(m_data), .m_valid(m_valid), .m_ready(m_ready), .m_last(m_last),
        .stage(stage), .err(err)
    );

    // ---- collect, count, dump ------------------------------------------------------------------------
    reg [3:0] stage_q;
    integer   fd;
    reg       running;
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
            end
        end
        stage_q <= stage;
        if (m_valid && m_ready) begin
            out_tb[out_ptr] <= m_data;
            out_ptr <= out_ptr + 1;
            if (m_last) begin
                running <= 1'b0;
                done    <= 1'b1;
                $fwrite(fd, "end %0d\n", cycles + 1);
                $fclose(fd);
                // out_tb's last word lands at this edge: dump after the nonblocking updates
                #1 dump;
            end
        end
        if (start) begin
            running <= 1'b1;
            done    <= 1'b0;
            cycles  <= 0;
            out_ptr <= 0;
            $sformat(fname, "%0s/stages.txt", dump_dir);
            fd = $fopen(fname, "w");
            $fwrite(fd, "%0d 0\n", stage);
        end
        if (rst) begin
            if (running) $fclose(fd);                   // a run abandoned by the reset
            running <= 1'b0;
            done    <= 1'b0;
            cycles  <= 0;
            out_ptr <= 0;
        end
    end

endmodule

`resetall

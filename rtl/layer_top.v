// SPDX-License-Identifier: Apache-2.0
// Language: Verilog 2005

`resetall
`timescale 1ns / 1ps
`default_nettype none

/*
 * layer_top: one GPT-2 transformer layer (pre-LN, causal attention, GELU MLP) in fixed point,
 * bit-exact to refmodel's quantized layer under any precision plan whose content it implements
 * (the `hw` preset is one; refmodel.rtl_layer.rtl_support names what a plan needs that it lacks).
 *
 * Model: refmodel.layer.quantized.run_quantized(config, weights, x, plan) (fixed-point branch).
 * Every tensor below is the model's tensor of the same name, code for code; the golden set's
 * manifest ("units") gives every parameter (rtl/README.md maps manifest keys to them).
 *
 *   stage  tensor  computed by                                   format (hw)      model
 *   LOAD   x       input stream s_* (SEQ*D_MODEL words)          s16.8            input
 *   LN1    ln1     layernorm (LN1_*), SLaNC shift LN1_SHIFT       s16.11           _fixed_norm
 *   Q/K/V  q k v   mac_dot + layer_acc + requant (ln1 @ W^T + b)  s16.8            _fixed_matmul
 *   SC     scores  (q.k) + requant (x SC_MULT >> SC_SHIFT)         s16.8, masked 0  _fixed_scores
 *   SM     probs   softmax_row, s_mask = causal (key > query)     u16.15           _fixed_softmax
 *   MIX    attn    (probs @ v, keys <= query) + requant            s16.10           _fixed_mix
 *   PROJ   proj    (attn @ wo^T + bo) + requant                    s16.8            _fixed_matmul
 *   RES1   res1    layer_sat_add (x + proj, saturate)             s16.8            add
 *   LN2    ln2     layernorm (LN2_*), SLaNC shift LN2_SHIFT       s16.11           _fixed_norm
 *   UP     up      (ln2 @ w_up^T + b_up) + requant                 s16.10           _fixed_matmul
 *   ACT    act     requant (>> ACT_SHIFT to s<ACT_IN_W>) + act_table  s16.10       _fixed_act
 *   DOWN   down    (act @ w_down^T + b_down) + requant             s16.8            _fixed_matmul
 *   OUT    out     layer_sat_add (res1 + down, saturate)           s16.8            add
 *   DRAIN  --      output stream m_* (SEQ*D_MODEL words of out)
 *   SKIP   --      framing error recovery: drop input words up to the next s_last
 *
 * Datapath: ONE mac_dot multiplies LANES operand pairs per beat and sums them exactly (its own
 * accumulator is bypassed: every beat is a one-beat dot product, m_acc is the beat sum); ONE
 * layer_acc accumulates the beat sums of a dot product with the stage's accumulator width
 * <STAGE>_ACC_W and overflow policy <STAGE>_ACC_SAT (wrap mod 2^w, or saturate at every
 * product), starting from the stage's bias; ONE requant rounds it: shift RQ_SHIFT = max of all
 * stage shifts, multiplier chosen per stage: 2^(RQ_SHIFT - <STAGE>_SHIFT) for a plain rounding
 * shift (exactly round_shift(acc, SHIFT) of the model: the appended zero bits change neither the
 * round nor the sticky bit), and SC_MULT * 2^(RQ_SHIFT - SC_SHIFT) for the scores'
 * 1/sqrt(head_dim) scale. Before the requantiser the accumulator is clamped to RQ_IN_W =
 * ACT_W + RQ_SHIFT + 1 bits (when narrower than the widest accumulator): every value the clamp
 * changes saturates the output either way, so the clamp changes no result. Biases are
 * sign-extended and shifted left by <STAGE>_BIAS_LSH (the model's bias_lsh) before the preload.
 * With wrapping accumulators the beat grouping (LANES) does not change any result (the model's
 * wrap is the exact sum mod 2^w); a saturating stage needs LANES = 1 (elaboration stops).
 * Causal attention: scores for key j > query i are issued as one all-zero beat (the MAC then
 * gives 0, the model's masked value) and their softmax element is masked; the attention mix
 * sums over keys 0..i only (the masked probabilities are exactly 0).
 *
 * Sequencing: an explicit stage FSM (every stage code listed, next stage named in one table;
 * codes 17..31 are unused and return to LOAD). The stages run one after another (table order).
 * layer_seq issues each stage's loop nest; a fetch register reads the buffers / ROMs
 * (synchronous reads) and feeds the stage's unit (in DRAIN it is the m_* output register); for
 * the MAC stages an operand register holds the extended, lane-assembled buses. Every unit's
 * output is written in order into the stage's buffer (write pointer) and the stage ends when its
 * last output is written. All units run with m_ready = 1 except the act requantiser (feeds
 * act_table); back-pressure reaches the loop nest through the units' s_ready. MAC stages take
 * exactly (beats + 7) cycles.
 * Buffers: one per tensor (x ln1 q k v scores probs attn proj res1 ln2 up act down out), all
 * kept until the next LOAD for inspection (rtl/layer_top_tb.v dumps them); q, k, v and attn are
 * stored [SEQ][D_MODEL] (head h at columns h*HEAD_DIM..), scores/probs [N_HEADS][SEQ][SEQ],
 * up/act [SEQ][D_FF]. Weights are ROMs loaded with $readmemh from the *_MEMFILE parameters
 * (the golden set's files, [out][in] row-major); layer_memcheck stops elaboration when a file
 * holds too few words. rtl/README.md has the schedule, memory map and parameter table.
 *
 * Handshake and framing: s_* takes input words only in LOAD and SKIP (s_ready high there). A
 * frame is exactly SEQ*D_MODEL words (row-major x) with s_last on its last word and only there.
 * A short frame (s_last before the last word) is dropped: err is set and LOAD starts over with
 * the next word. A long frame (no s_last on the last word) is dropped too: err is set and SKIP
 * discards words up to and including the next s_last, then LOAD starts over. A complete frame
 * runs the layer, which presents out row-major on m_* (m_valid registered; m_data and m_last
 * are 0 outside valid beats, m_last on the last word). `err` (sticky until rst): a framing
 * error on s_*, or a layernorm framing error. `stage` shows the stage code (0 LOAD .. 15 DRAIN,
 * 16 SKIP).
 * Reset: synchronous, active high, one cycle is enough; abandons a run at any point (every unit
 * is reset, every valid and the outputs cleared) and returns to LOAD. Buffers and ROMs are not
 * cleared.
 */
module layer_top #(
`include "layer_top_params.vh"
) (
    input  wire              clk,
    input  wire              rst,

    // layer input x, row-major, SEQ*D_MODEL words (taken in LOAD and SKIP only)
    input  wire [ACT_W-1:0]  s_data,
    input  wire              s_valid,
    output wire              s_ready,
    input  wire              s_last,

    // layer output out, row-major, SEQ*D_MODEL words
    output wire [ACT_W-1:0]  m_data,
    output wire              m_valid,
    input  wire              m_ready,
    output wire              m_last,

    output wire [4:0]        stage,   // current stage (0 LOAD .. 15 DRAIN, 16 SKIP)
    output wire              err      // sticky framing error
);

    // ---- constant functions --------------------------------------------------------------------
    function integer max2;
        input integer a;
        input integer b;
        begin
            max2 = (a > b) ? a : b;
        end
    endfunction

    function integer min2;
        input integer a;
        input integer b;
        begin
            min2 = (a < b) ? a : b;
        end
    endfunction

    function integer bitlen;  // bits of the unsigned value v (0 for 0)
        input [63:0] v;
        integer i;
        begin
            bitlen = 0;
            for (i = 0; i < 64; i = i + 1)
                if (v[i]) bitlen = i + 1;
        end
    endfunction

    // ---- derived sizes ---------------------------------------------------------------------------
    localparam integer N_SD   = SEQ * D_MODEL;              // x ln1 q k v attn proj res1 ln2 down out
    localparam integer N_HSS  = N_HEADS * SEQ * SEQ;        // scores probs
    localparam integer N_SF   = SEQ * D_FF;                 // up act
    localparam integer N_DD   = D_MODEL * D_MODEL;          // wq wk wv wo
    localparam integer N_FD   = D_FF * D_MODEL;             // w_up w_down
    localparam integer D_AW   = $clog2(D_MODEL);
    localparam integer F_AW   = $clog2(D_FF);
    localparam integer SD_AW  = $clog2(N_SD);
    localparam integer HSS_AW = $clog2(N_HSS);
    localparam integer SF_AW  = $clog2(N_SF);
    localparam integer DD_AW  = $clog2(N_DD);
    localparam integer FD_AW  = $clog2(N_FD);
    localparam integer A_MAX  = max2(SD_AW, max2(HSS_AW, SF_AW));   // buffers read as MAC operand a
    localparam integer W_MAX  = max2(SD_AW, max2(DD_AW, FD_AW));    // memories read as operand w
    // counter / address width: above every address width (so each slice leaves a top bit)
    localparam integer CW     = max2(A_MAX, W_MAX) + 1;

    // MAC operands, beat sum, accumulator
    localparam integer MAC_A_W = max2(ACT_W, PROB_W + 1);   // probs enter zero-extended
    localparam integer MAC_W_W = max2(ACT_W, WGT_W);
    localparam integer BEAT_W  = MAC_A_W + MAC_W_W + $clog2(LANES);  // exact sum of a beat's products
    localparam integer ACC_MAX = max2(max2(max2(Q_ACC_W, K_ACC_W), max2(V_ACC_W, SC_ACC_W)),
                                      max2(max2(MIX_ACC_W, PROJ_ACC_W), max2(UP_ACC_W, DOWN_ACC_W)));
    localparam integer ACC_MIN = min2(min2(min2(Q_ACC_W, K_ACC_W), min2(V_ACC_W, SC_ACC_W)),
                                      min2(min2(MIX_ACC_W, PROJ_ACC_W), min2(UP_ACC_W, DOWN_ACC_W)));
    localparam integer ANY_SAT = Q_ACC_SAT | K_ACC_SAT | V_ACC_SAT | SC_ACC_SAT | MIX_ACC_SAT | PROJ_ACC_SAT |
                                 UP_ACC_SAT | DOWN_ACC_SAT;
    // largest value of each stage's accumulator, 2^(w-1) - 1
    localparam [63:0]  ONE64   = 64'd1;
    localparam [63:0]  HI_Q64    = (ONE64 << (Q_ACC_W - 1)) - ONE64;
    localparam [63:0]  HI_K64    = (ONE64 << (K_ACC_W - 1)) - ONE64;
    localparam [63:0]  HI_V64    = (ONE64 << (V_ACC_W - 1)) - ONE64;
    localparam [63:0]  HI_SC64   = (ONE64 << (SC_ACC_W - 1)) - ONE64;
    localparam [63:0]  HI_MIX64  = (ONE64 << (MIX_ACC_W - 1)) - ONE64;
    localparam [63:0]  HI_PROJ64 = (ONE64 << (PROJ_ACC_W - 1)) - ONE64;
    localparam [63:0]  HI_UP64   = (ONE64 << (UP_ACC_W - 1)) - ONE64;
    localparam [63:0]  HI_DOWN64 = (ONE64 << (DOWN_ACC_W - 1)) - ONE64;

    // shared requantiser: one shift, a per-stage multiplier
    localparam integer LIN_MAX = max2(max2(max2(Q_SHIFT, K_SHIFT), max2(V_SHIFT, PROJ_SHIFT)),
                                      max2(max2(UP_SHIFT, DOWN_SHIFT), MIX_SHIFT));
    localparam integer LIN_MIN = min2(min2(min2(Q_SHIFT, K_SHIFT), min2(V_SHIFT, PROJ_SHIFT)),
                                      min2(min2(UP_SHIFT, DOWN_SHIFT), MIX_SHIFT));
    localparam integer RQ_SHIFT = max2(LIN_MAX, SC_SHIFT);
    localparam [31:0]  SC_MULT32 = SC_MULT;
    localparam [63:0]  SC_MULT64 = 64'd1 * SC_MULT32;
    localparam [63:0]  M_SC64 = SC_MULT64 << (RQ_SHIFT - SC_SHIFT);
    localparam integer RQ_M_W = max2(RQ_SHIFT - LIN_MIN + 1, bitlen(M_SC64));
    // requantiser input: the accumulator clamped to ACT_W + RQ_SHIFT + 1 bits (exact, see above)
    localparam integer RQ_IN_W = min2(ACC_MAX, ACT_W + RQ_SHIFT + 1);
    localparam [63:0]  M_Q64    = ONE64 << (RQ_SHIFT - Q_SHIFT);
    localparam [63:0]  M_K64    = ONE64 << (RQ_SHIFT - K_SHIFT);
    localparam [63:0]  M_V64    = ONE64 << (RQ_SHIFT - V_SHIFT);
    localparam [63:0]  M_MIX64  = ONE64 << (RQ_SHIFT - MIX_SHIFT);
    localparam [63:0]  M_PROJ64 = ONE64 << (RQ_SHIFT - PROJ_SHIFT);
    localparam [63:0]  M_UP64   = ONE64 << (RQ_SHIFT - UP_SHIFT);
    localparam [63:0]  M_DOWN64 = ONE64 << (RQ_SHIFT - DOWN_SHIFT);

    // ---- parameter checks ------------------------------------------------------------------------
    initial begin
        if (D_MODEL < 2 || N_HEADS < 1 || HEAD_DIM < 1 || N_HEADS * HEAD_DIM != D_MODEL || D_FF < 2 ||
            SEQ < 2 || LANES < 1 || CW > 31 || LANES >= (1 << (CW - 1))) begin
            $error("%m: illegal shape D_MODEL=%0d N_HEADS=%0d HEAD_DIM=%0d D_FF=%0d SEQ=%0d LANES=%0d",
                   D_MODEL, N_HEADS, HEAD_DIM, D_FF, SEQ, LANES);
            $finish;
        end
        if ((Q_ACC_SAT < 0) || (Q_ACC_SAT > 1) || (K_ACC_SAT < 0) || (K_ACC_SAT > 1) ||
            (V_ACC_SAT < 0) || (V_ACC_SAT > 1) || (SC_ACC_SAT < 0) || (SC_ACC_SAT > 1) ||
            (MIX_ACC_SAT < 0) || (MIX_ACC_SAT > 1) || (PROJ_ACC_SAT < 0) || (PROJ_ACC_SAT > 1) ||
            (UP_ACC_SAT < 0) || (UP_ACC_SAT > 1) || (DOWN_ACC_SAT < 0) || (DOWN_ACC_SAT > 1) ||
            ACC_SAT < 0 || ACC_SAT > 1 ||
            (ANY_SAT != 0 && LANES != 1) || ROUND_MODE < 0 || ROUND_MODE > 2) begin
            $error("%m: illegal <STAGE>_ACC_SAT (0 or 1; saturation needs LANES=1, got %0d) or ROUND_MODE=%0d",
                   LANES, ROUND_MODE);
            $finish;
        end
        if (ACC_MIN < 2 || ACC_MAX > 62 || BEAT_W > 62 || ACC_W < 2 || ACC_W > 62) begin
            $error("%m: illegal accumulator widths %0d..%0d (2..62; beat sum %0d bits)", ACC_MIN, ACC_MAX, BEAT_W);
            $finish;
        end
        if (ACT_W < 2 || PROB_W < 1 || WGT_W < 1 || BIAS_W < 1 ||
            (BIAS_W + Q_BIAS_LSH > Q_ACC_W) || (BIAS_W + K_BIAS_LSH > K_ACC_W) ||
            (BIAS_W + V_BIAS_LSH > V_ACC_W) || (BIAS_W + PROJ_BIAS_LSH > PROJ_ACC_W) ||
            (BIAS_W + UP_BIAS_LSH > UP_ACC_W) || (BIAS_W + DOWN_BIAS_LSH > DOWN_ACC_W) ||
            (Q_BIAS_LSH < 0) || (K_BIAS_LSH < 0) || (V_BIAS_LSH < 0) || (PROJ_BIAS_LSH < 0) ||
            (UP_BIAS_LSH < 0) || (DOWN_BIAS_LSH < 0)) begin
            $error("%m: illegal widths ACT_W=%0d PROB_W=%0d WGT_W=%0d BIAS_W=%0d, or a <STAGE>_BIAS_LSH < 0 or above its ACC_W - BIAS_W",
                   ACT_W, PROB_W, WGT_W, BIAS_W);
            $finish;
        end
        if (LIN_MIN < 0 || SC_SHIFT < 0 || SC_MULT < 1 || RQ_IN_W + RQ_M_W > 62) begin
            $error("%m: requantiser does not fit: shifts %0d..%0d, SC_MULT=%0d SC_SHIFT=%0d need M_W=%0d, IN_W=%0d",
                   LIN_MIN, LIN_MAX, SC_MULT, SC_SHIFT, RQ_M_W, RQ_IN_W);
            $finish;
        end
        if (SM_N_MAX < SEQ || ACT_SHIFT < 0 || ACT_IN_W < 1 || ACT_IN_W > 16) begin
            $error("%m: illegal SM_N_MAX=%0d (SEQ=%0d), ACT_SHIFT=%0d or ACT_IN_W=%0d", SM_N_MAX, SEQ, ACT_SHIFT, ACT_IN_W);
            $finish;
        end
        if (WQ_MEMFILE == "" || WK_MEMFILE == "" || WV_MEMFILE == "" || WO_MEMFILE == "" || W_UP_MEMFILE == "" ||
            W_DOWN_MEMFILE == "" || BQ_MEMFILE == "" || BK_MEMFILE == "" || BV_MEMFILE == "" || BO_MEMFILE == "" ||
            B_UP_MEMFILE == "" || B_DOWN_MEMFILE == "") begin
            $error("%m: every weight/bias *_MEMFILE parameter must be set");
            $finish;
        end
    end

    // ---- stages -------------------------------------------------------------------------------------
    localparam [4:0] ST_LOAD = 5'd0,  ST_LN1  = 5'd1,  ST_Q    = 5'd2,  ST_K    = 5'd3,
                     ST_V    = 5'd4,  ST_SC   = 5'd5,  ST_SM   = 5'd6,  ST_MIX  = 5'd7,
                     ST_PROJ = 5'd8,  ST_RES1 = 5'd9,  ST_LN2  = 5'd10, ST_UP   = 5'd11,
                     ST_ACT  = 5'd12, ST_DOWN = 5'd13, ST_OUT  = 5'd14, ST_DRAIN = 5'd15,
                     ST_SKIP = 5'd16;

    reg  [4:0] stage_reg;
    wire is_load  = (stage_reg == ST_LOAD);
    wire is_skip  = (stage_reg == ST_SKIP);
    wire is_ln1   = (stage_reg == ST_LN1);
    wire is_q     = (stage_reg == ST_Q);
    wire is_k     = (stage_reg == ST_K);
    wire is_v     = (stage_reg == ST_V);
    wire is_sc    = (stage_reg == ST_SC);
    wire is_sm    = (stage_reg == ST_SM);
    wire is_mix   = (stage_reg == ST_MIX);
    wire is_proj  = (stage_reg == ST_PROJ);
    wire is_ln2   = (stage_reg == ST_LN2);
    wire is_up    = (stage_reg == ST_UP);
    wire is_act   = (stage_reg == ST_ACT);
    wire is_down  = (stage_reg == ST_DOWN);
    wire is_drain = (stage_reg == ST_DRAIN);
    wire is_mac   = is_q | is_k | is_v | is_sc | is_mix | is_proj | is_up | is_down;

    // ---- constants in counter width ---------------------------------------------------------------
    localparam [CW-1:0] ONE_C   = 1;
    localparam [CW-1:0] S_C     = SEQ[CW-1:0];
    localparam [CW-1:0] D_C     = D_MODEL[CW-1:0];
    localparam [CW-1:0] F_C     = D_FF[CW-1:0];
    localparam [CW-1:0] H_C     = N_HEADS[CW-1:0];
    localparam [CW-1:0] HD_C    = HEAD_DIM[CW-1:0];
    localparam [CW-1:0] N_SD_C  = N_SD[CW-1:0];
    localparam [CW-1:0] N_HSS_C = N_HSS[CW-1:0];
    localparam [CW-1:0] N_SF_C  = N_SF[CW-1:0];

    // ---- buffers (one per tensor) and ROMs ------------------------------------------------------------
    reg [ACT_W-1:0]  x_mem      [0:N_SD-1];
    reg [ACT_W-1:0]  ln1_mem    [0:N_SD-1];
    reg [ACT_W-1:0]  q_mem      [0:N_SD-1];
    reg [ACT_W-1:0]  k_mem      [0:N_SD-1];
    reg [ACT_W-1:0]  v_mem      [0:N_SD-1];
    reg [ACT_W-1:0]  scores_mem [0:N_HSS-1];
    reg [PROB_W-1:0] probs_mem  [0:N_HSS-1];
    reg [ACT_W-1:0]  attn_mem   [0:N_SD-1];
    reg [ACT_W-1:0]  proj_mem   [0:N_SD-1];
    reg [ACT_W-1:0]  res1_mem   [0:N_SD-1];
    reg [ACT_W-1:0]  ln2_mem    [0:N_SD-1];
    reg [ACT_W-1:0]  up_mem     [0:N_SF-1];
    reg [ACT_W-1:0]  act_mem    [0:N_SF-1];
    reg [ACT_W-1:0]  down_mem   [0:N_SD-1];
    reg [ACT_W-1:0]  out_mem    [0:N_SD-1];

    reg [WGT_W-1:0]  wq_mem     [0:N_DD-1];
    reg [WGT_W-1:0]  wk_mem     [0:N_DD-1];
    reg [WGT_W-1:0]  wv_mem     [0:N_DD-1];
    reg [WGT_W-1:0]  wo_mem     [0:N_DD-1];
    reg [WGT_W-1:0]  w_up_mem   [0:N_FD-1];    // [D_FF][D_MODEL]
    reg [WGT_W-1:0]  w_down_mem [0:N_FD-1];    // [D_MODEL][D_FF]
    reg [BIAS_W-1:0] bq_mem     [0:D_MODEL-1];
    reg [BIAS_W-1:0] bk_mem     [0:D_MODEL-1];
    reg [BIAS_W-1:0] bv_mem     [0:D_MODEL-1];
    reg [BIAS_W-1:0] bo_mem     [0:D_MODEL-1];
    reg [BIAS_W-1:0] b_up_mem   [0:D_FF-1];
    reg [BIAS_W-1:0] b_down_mem [0:D_MODEL-1];

    initial begin
        $readmemh(WQ_MEMFILE, wq_mem);
        $readmemh(WK_MEMFILE, wk_mem);
        $readmemh(WV_MEMFILE, wv_mem);
        $readmemh(WO_MEMFILE, wo_mem);
        $readmemh(W_UP_MEMFILE, w_up_mem);
        $readmemh(W_DOWN_MEMFILE, w_down_mem);
        $readmemh(BQ_MEMFILE, bq_mem);
        $readmemh(BK_MEMFILE, bk_mem);
        $readmemh(BV_MEMFILE, bv_mem);
        $readmemh(BO_MEMFILE, bo_mem);
        $readmemh(B_UP_MEMFILE, b_up_mem);
        $readmemh(B_DOWN_MEMFILE, b_down_mem);
    end

    // simulation-only: a short or missing file stops elaboration (sentinel check, any simulator)
    layer_memcheck #(.W(WGT_W),  .N(N_DD),    .MEMFILE(WQ_MEMFILE))     u_chk_wq ();
    layer_memcheck #(.W(WGT_W),  .N(N_DD),    .MEMFILE(WK_MEMFILE))     u_chk_wk ();
    layer_memcheck #(.W(WGT_W),  .N(N_DD),    .MEMFILE(WV_MEMFILE))     u_chk_wv ();
    layer_memcheck #(.W(WGT_W),  .N(N_DD),    .MEMFILE(WO_MEMFILE))     u_chk_wo ();
    layer_memcheck #(.W(WGT_W),  .N(N_FD),    .MEMFILE(W_UP_MEMFILE))   u_chk_w_up ();
    layer_memcheck #(.W(WGT_W),  .N(N_FD),    .MEMFILE(W_DOWN_MEMFILE)) u_chk_w_down ();
    layer_memcheck #(.W(BIAS_W), .N(D_MODEL), .MEMFILE(BQ_MEMFILE))     u_chk_bq ();
    layer_memcheck #(.W(BIAS_W), .N(D_MODEL), .MEMFILE(BK_MEMFILE))     u_chk_bk ();
    layer_memcheck #(.W(BIAS_W), .N(D_MODEL), .MEMFILE(BV_MEMFILE))     u_chk_bv ();
    layer_memcheck #(.W(BIAS_W), .N(D_MODEL), .MEMFILE(BO_MEMFILE))     u_chk_bo ();
    layer_memcheck #(.W(BIAS_W), .N(D_FF),    .MEMFILE(B_UP_MEMFILE))   u_chk_b_up ();
    layer_memcheck #(.W(BIAS_W), .N(D_MODEL), .MEMFILE(B_DOWN_MEMFILE)) u_chk_b_down ();

    // ---- loop nest ------------------------------------------------------------------------------------
    reg              seq_start_reg;
    reg  [CW-1:0]    n1, n2, n3, klen;
    wire [CW-1:0]    c1, c2, c3, kk, idx;
    wire             seq_valid, seq_last, seq_ready;

    // scores of a masked (key > query) pair: one all-zero beat
    wire zero_beat = is_sc && (c3 > c2);

    // loop counts per stage (layer_seq: for c1 < n1: for c2 < n2: for c3 < n3: klen-long item)
    always @* begin
        n1   = S_C;
        n2   = ONE_C;
        n3   = D_C;
        klen = ONE_C;
        case (stage_reg)
            ST_LN1, ST_LN2, ST_RES1, ST_OUT, ST_DRAIN: ;                       // token / - / column
            ST_Q, ST_K, ST_V, ST_PROJ: klen = D_C;                            // token / - / output
            ST_UP:   begin n3 = F_C; klen = D_C; end
            ST_ACT:  n3 = F_C;
            ST_DOWN: klen = F_C;
            ST_SC:   begin n1 = H_C; n2 = S_C; n3 = S_C; klen = zero_beat ? ONE_C : HD_C; end
            ST_SM:   begin n1 = H_C; n2 = S_C; n3 = S_C; end
            ST_MIX:  begin n2 = H_C; n3 = HD_C; klen = c1 + ONE_C; end
            ST_LOAD, ST_SKIP: ;                                                // the nest is idle
            default: ;                                                         // unused codes
        endcase
    end

    layer_seq #(.CW(CW), .LANES(LANES)) u_seq (
        .clk(clk), .rst(rst),
        .start(seq_start_reg), .n1(n1), .n2(n2), .n3(n3), .klen(klen),
        .c1(c1), .c2(c2), .c3(c3), .kk(kk), .idx(idx),
        .m_last(seq_last), .m_valid(seq_valid), .m_ready(seq_ready)
    );

    // ---- fetch: one register stage between the loop nest and the units --------------------------------
    // Every buffer / ROM read is registered here (synchronous-read memories). The fetch register
    // is a one-deep pipeline stage: it takes a beat when empty or when its consumer takes the
    // current one. In DRAIN it is the output register of m_*.
    reg               f_valid_reg;
    reg               f_last_reg;
    reg               f_mask_reg;
    reg  [ACT_W-1:0]  f_data_reg;     // streamed element (x, res1, scores, up, out; residual operand a)
    reg  [ACT_W-1:0]  f_b_reg;        // residual operand b (proj, down)
    reg  [BIAS_W-1:0] f_bias_reg;     // bias code of the dot product (first beat)
    reg               f_ready;

    assign seq_ready = !f_valid_reg || f_ready;
    wire f_load = seq_valid && seq_ready;

    // addresses in exactly the width of the largest memory they index (counters are < 2^A_MAX,
    // 2^W_MAX). MAC beats:
    //   linear  : c1 = token i, c3 = output n, k = input index       a[i][k], W[n][k]
    //   scores  : c1 = head h, c2 = query i, c3 = key j, k = dim     q[i][h*HD+k], k[j][h*HD+k]
    //   mix     : c1 = query i, c2 = head h, c3 = dim n, k = key j   probs[h][i][k], v[k][h*HD+n]
    localparam [A_MAX-1:0] S_A  = SEQ[A_MAX-1:0];
    localparam [A_MAX-1:0] D_A  = D_MODEL[A_MAX-1:0];
    localparam [A_MAX-1:0] F_A  = D_FF[A_MAX-1:0];
    localparam [A_MAX-1:0] HD_A = HEAD_DIM[A_MAX-1:0];
    localparam [W_MAX-1:0] D_W  = D_MODEL[W_MAX-1:0];
    localparam [W_MAX-1:0] F_W  = D_FF[W_MAX-1:0];
    localparam [W_MAX-1:0] HD_W = HEAD_DIM[W_MAX-1:0];
    wire [A_MAX-1:0] c1_a = c1[A_MAX-1:0], c2_a = c2[A_MAX-1:0];
    wire [W_MAX-1:0] c1_w = c1[W_MAX-1:0], c2_w = c2[W_MAX-1:0], c3_w = c3[W_MAX-1:0];
    wire [A_MAX-1:0] a_base = is_sc   ? c2_a * D_A + c1_a * HD_A :
                              is_mix  ? (c2_a * S_A + c1_a) * S_A :
                              is_down ? c1_a * F_A : c1_a * D_A;
    wire [W_MAX-1:0] w_base = is_sc   ? c3_w * D_W + c1_w * HD_W :
                              is_mix  ? c2_w * HD_W + c3_w :
                              is_down ? c3_w * F_W : c3_w * D_W;

    wire [LANES*MAC_A_W-1:0] op_a;      // MAC operands of the fetched beat (extended, masked)
    wire [LANES*MAC_W_W-1:0] op_w;

    genvar l;
    generate
        for (l = 0; l < LANES; l = l + 1) begin : g_lane
            localparam integer  LI  = l;
            localparam [CW-1:0] L_C = LI[CW-1:0];
            wire [CW-1:0]    k_l   = kk + L_C;
            wire             ok    = (k_l < klen) && !zero_beat;   // lane inside the dot product
            wire [A_MAX-1:0] a_idx = a_base + k_l[A_MAX-1:0];
            wire [W_MAX-1:0] w_idx = w_base + (is_mix ? k_l[W_MAX-1:0] * D_W : k_l[W_MAX-1:0]);

            reg [ACT_W-1:0]  a_act_reg;   // operand a from an activation buffer
            reg [PROB_W-1:0] a_pr_reg;    // operand a from probs (unsigned)
            reg [WGT_W-1:0]  w_wgt_reg;   // operand w from a weight ROM
            reg [ACT_W-1:0]  w_act_reg;   // operand w from the k / v buffer
            reg              ok_reg;

            always @(posedge clk) begin
                if (f_load && is_mac) begin
                    ok_reg <= ok;
                    case (stage_reg)
                        ST_Q, ST_K, ST_V: a_act_reg <= ln1_mem[a_idx[SD_AW-1:0]];
                        ST_SC:   a_act_reg <= q_mem[a_idx[SD_AW-1:0]];
                        ST_MIX:  a_pr_reg  <= probs_mem[a_idx[HSS_AW-1:0]];
                        ST_PROJ: a_act_reg <= attn_mem[a_idx[SD_AW-1:0]];
                        ST_UP:   a_act_reg <= ln2_mem[a_idx[SD_AW-1:0]];
                        ST_DOWN: a_act_reg <= act_mem[a_idx[SF_AW-1:0]];
                        ST_LOAD, ST_LN1, ST_SM, ST_RES1, ST_LN2, ST_ACT, ST_OUT, ST_DRAIN, ST_SKIP: ; // is_mac gates
                        default: ;                                  // unused codes
                    endcase
                    case (stage_reg)
                        ST_Q:    w_wgt_reg <= wq_mem[w_idx[DD_AW-1:0]];
                        ST_K:    w_wgt_reg <= wk_mem[w_idx[DD_AW-1:0]];
                        ST_V:    w_wgt_reg <= wv_mem[w_idx[DD_AW-1:0]];
                        ST_SC:   w_act_reg <= k_mem[w_idx[SD_AW-1:0]];
                        ST_MIX:  w_act_reg <= v_mem[w_idx[SD_AW-1:0]];
                        ST_PROJ: w_wgt_reg <= wo_mem[w_idx[DD_AW-1:0]];
                        ST_UP:   w_wgt_reg <= w_up_mem[w_idx[FD_AW-1:0]];
                        ST_DOWN: w_wgt_reg <= w_down_mem[w_idx[FD_AW-1:0]];
                        ST_LOAD, ST_LN1, ST_SM, ST_RES1, ST_LN2, ST_ACT, ST_OUT, ST_DRAIN, ST_SKIP: ; // is_mac gates
                        default: ;                                  // unused codes
                    endcase
                end
            end

            wire [MAC_A_W-1:0] a_sx, a_zx;
            wire [MAC_W_W-1:0] w_wx, w_ax;
            layer_ext #(.IN_W(ACT_W),  .OUT_W(MAC_A_W), .SIGNED(1)) u_ax (.in(a_act_reg), .out(a_sx));
            layer_ext #(.IN_W(PROB_W), .OUT_W(MAC_A_W), .SIGNED(0)) u_px (.in(a_pr_reg),  .out(a_zx));
            layer_ext #(.IN_W(WGT_W),  .OUT_W(MAC_W_W), .SIGNED(1)) u_wx (.in(w_wgt_reg), .out(w_wx));
            layer_ext #(.IN_W(ACT_W),  .OUT_W(MAC_W_W), .SIGNED(1)) u_kx (.in(w_act_reg), .out(w_ax));
            assign op_a[l*MAC_A_W +: MAC_A_W] = !ok_reg ? {MAC_A_W{1'b0}} : is_mix ? a_zx : a_sx;
            assign op_w[l*MAC_W_W +: MAC_W_W] = !ok_reg ? {MAC_W_W{1'b0}} : (is_sc | is_mix) ? w_ax : w_wx;
        end
    endgenerate

    // streamed elements, residual operands, bias, flags
    always @(posedge clk) begin
        if (f_load) begin
            f_mask_reg <= (c3 > c2);                                          // SM: key > query
            case (stage_reg)
                ST_LN1, ST_LN2: f_last_reg <= (c3 == D_C - ONE_C);            // row end
                ST_SM:          f_last_reg <= (c3 == S_C - ONE_C);            // row end
                ST_DRAIN:       f_last_reg <= (idx == N_SD_C - ONE_C);        // last word
                ST_Q, ST_K, ST_V, ST_SC, ST_MIX, ST_PROJ, ST_UP, ST_DOWN:
                                f_last_reg <= seq_last;                       // dot product end
                ST_RES1, ST_ACT, ST_OUT: f_last_reg <= 1'b0;                  // not used
                ST_LOAD, ST_SKIP: f_last_reg <= 1'b0;                         // no nest
                default:        f_last_reg <= 1'b0;                           // unused codes
            endcase
            case (stage_reg)
                ST_LN1:  f_data_reg <= x_mem[idx[SD_AW-1:0]];
                ST_LN2:  f_data_reg <= res1_mem[idx[SD_AW-1:0]];
                ST_SM:   f_data_reg <= scores_mem[idx[HSS_AW-1:0]];
                ST_ACT:  f_data_reg <= up_mem[idx[SF_AW-1:0]];
                ST_DRAIN: f_data_reg <= out_mem[idx[SD_AW-1:0]];
                ST_RES1: begin
                    f_data_reg <= x_mem[idx[SD_AW-1:0]];
                    f_b_reg    <= proj_mem[idx[SD_AW-1:0]];
                end
                ST_OUT: begin
                    f_data_reg <= res1_mem[idx[SD_AW-1:0]];
                    f_b_reg    <= down_mem[idx[SD_AW-1:0]];
                end
                ST_Q:    f_bias_reg <= bq_mem[c3[D_AW-1:0]];
                ST_K:    f_bias_reg <= bk_mem[c3[D_AW-1:0]];
                ST_V:    f_bias_reg <= bv_mem[c3[D_AW-1:0]];
                ST_PROJ: f_bias_reg <= bo_mem[c3[D_AW-1:0]];
                ST_UP:   f_bias_reg <= b_up_mem[c3[F_AW-1:0]];
                ST_DOWN: f_bias_reg <= b_down_mem[c3[D_AW-1:0]];
                ST_SC, ST_MIX: f_bias_reg <= {BIAS_W{1'b0}};                 // no bias
                ST_LOAD, ST_SKIP: ;                                           // no nest
                default: ;                                                    // unused codes
            endcase
        end
        if (seq_ready) begin
            f_valid_reg <= seq_valid;
        end
        if (rst) begin
            f_valid_reg <= 1'b0;
            f_last_reg  <= 1'b0;
            f_mask_reg  <= 1'b0;
            f_data_reg  <= {ACT_W{1'b0}};
        end
    end

    // ---- bias: sign-extended, aligned to the accumulator LSB ------------------------------------------
    wire [ACC_MAX-1:0] b_x;
    layer_ext #(.IN_W(BIAS_W), .OUT_W(ACC_MAX), .SIGNED(1)) u_bx (.in(f_bias_reg), .out(b_x));
    reg  [ACC_MAX-1:0] op_bias;
    always @* begin
        case (stage_reg)
            ST_Q:    op_bias = b_x << Q_BIAS_LSH;
            ST_K:    op_bias = b_x << K_BIAS_LSH;
            ST_V:    op_bias = b_x << V_BIAS_LSH;
            ST_PROJ: op_bias = b_x << PROJ_BIAS_LSH;
            ST_UP:   op_bias = b_x << UP_BIAS_LSH;
            ST_DOWN: op_bias = b_x << DOWN_BIAS_LSH;
            ST_SC, ST_MIX: op_bias = {ACC_MAX{1'b0}};                          // no bias
            ST_LOAD, ST_LN1, ST_SM, ST_RES1, ST_LN2, ST_ACT, ST_OUT, ST_DRAIN, ST_SKIP:
                     op_bias = {ACC_MAX{1'b0}};                                // not a MAC stage
            default: op_bias = {ACC_MAX{1'b0}};                                // unused codes
        endcase
    end

    // ---- operand register: the MAC's inputs, each bus updated by one assignment per beat -------------
    // (a second pipeline stage for the MAC stages: the MAC sees each operand bus change once per
    // clock, which also keeps Icarus from re-evaluating the lane products per lane update)
    wire                     mac_s_ready, mac_m_valid, acc_s_ready;
    wire [BEAT_W-1:0]        mac_m_data, mac_m_acc;
    reg                      op_valid_reg;
    reg                      op_last_reg;
    reg  [LANES*MAC_A_W-1:0] mac_a_reg;
    reg  [LANES*MAC_W_W-1:0] mac_w_reg;
    reg  [ACC_MAX-1:0]       mac_bias_reg;
    wire                     op_ready = !op_valid_reg || mac_s_ready;

    always @(posedge clk) begin
        if (op_ready) begin
            op_valid_reg <= f_valid_reg && is_mac;
            if (f_valid_reg && is_mac) begin
                mac_a_reg    <= op_a;
                mac_w_reg    <= op_w;
                mac_bias_reg <= op_bias;
                op_last_reg  <= f_last_reg;
            end
        end
        if (rst) begin
            op_valid_reg <= 1'b0;
        end
    end

    // ---- MAC lanes: LANES exact products summed per beat (mac_dot with one-beat dot products) ---------
    mac_dot #(
        .A_W(MAC_A_W), .W_W(MAC_W_W), .LANES(LANES), .ACC_W(BEAT_W), .ACC_SAT(0),
        .B_W(BEAT_W), .BIAS_LSH(0), .SHIFT(0), .ROUND_MODE(ROUND_MODE), .OUT_W(BEAT_W)
    ) u_mac (
        .clk(clk), .rst(rst),
        .s_a(mac_a_reg), .s_w(mac_w_reg), .s_bias({BEAT_W{1'b0}}), .s_last(1'b1),
        .s_valid(op_valid_reg), .s_ready(mac_s_ready),
        .m_data(mac_m_data), .m_acc(mac_m_acc), .m_valid(mac_m_valid), .m_ready(acc_s_ready)
    );

    // the dot product's last flag and bias travel beside the MAC's output register
    reg               bs_last_reg;
    reg [ACC_MAX-1:0] bs_bias_reg;
    always @(posedge clk) begin
        if (op_valid_reg && mac_s_ready) begin
            bs_last_reg <= op_last_reg;
            bs_bias_reg <= mac_bias_reg;
        end
    end

    // ---- accumulator: the stage's width and overflow policy ---------------------------------------------
    reg  [ACC_MAX-1:0] acc_hi;
    reg                acc_sat;
    always @* begin
        case (stage_reg)
            ST_Q:    begin acc_hi = HI_Q64[ACC_MAX-1:0];    acc_sat = (Q_ACC_SAT != 0);    end
            ST_K:    begin acc_hi = HI_K64[ACC_MAX-1:0];    acc_sat = (K_ACC_SAT != 0);    end
            ST_V:    begin acc_hi = HI_V64[ACC_MAX-1:0];    acc_sat = (V_ACC_SAT != 0);    end
            ST_SC:   begin acc_hi = HI_SC64[ACC_MAX-1:0];   acc_sat = (SC_ACC_SAT != 0);   end
            ST_MIX:  begin acc_hi = HI_MIX64[ACC_MAX-1:0];  acc_sat = (MIX_ACC_SAT != 0);  end
            ST_PROJ: begin acc_hi = HI_PROJ64[ACC_MAX-1:0]; acc_sat = (PROJ_ACC_SAT != 0); end
            ST_UP:   begin acc_hi = HI_UP64[ACC_MAX-1:0];   acc_sat = (UP_ACC_SAT != 0);   end
            ST_DOWN: begin acc_hi = HI_DOWN64[ACC_MAX-1:0]; acc_sat = (DOWN_ACC_SAT != 0); end
            ST_LOAD, ST_LN1, ST_SM, ST_RES1, ST_LN2, ST_ACT, ST_OUT, ST_DRAIN, ST_SKIP:
                     begin acc_hi = HI_Q64[ACC_MAX-1:0];    acc_sat = 1'b0;                end  // not a MAC stage
            default: begin acc_hi = HI_Q64[ACC_MAX-1:0];    acc_sat = 1'b0;                end  // unused codes
        endcase
    end

    wire               acc_m_valid, rq_s_ready;
    wire [ACC_MAX-1:0] acc_m_acc;

    layer_acc #(.BEAT_W(BEAT_W), .ACC_W(ACC_MAX)) u_acc (
        .clk(clk), .rst(rst),
        .s_beat(mac_m_acc), .s_bias(bs_bias_reg), .s_last(bs_last_reg),
        .s_valid(mac_m_valid), .s_ready(acc_s_ready),
        .hi(acc_hi), .sat(acc_sat),
        .m_acc(acc_m_acc), .m_valid(acc_m_valid), .m_ready(rq_s_ready)
    );

    // ---- shared requantiser ------------------------------------------------------------------------------
    wire [RQ_IN_W-1:0] rq_in;          // the accumulator clamped to RQ_IN_W bits (changes no result)
    generate
        if (RQ_IN_W < ACC_MAX) begin : g_rq_clamp
            wire [ACC_MAX-RQ_IN_W:0] top = acc_m_acc[ACC_MAX-1:RQ_IN_W-1];
            wire fits = (top == {(ACC_MAX-RQ_IN_W+1){1'b0}}) || (top == {(ACC_MAX-RQ_IN_W+1){1'b1}});
            assign rq_in = fits ? acc_m_acc[RQ_IN_W-1:0] :
                           acc_m_acc[ACC_MAX-1] ? {1'b1, {(RQ_IN_W-1){1'b0}}} : {1'b0, {(RQ_IN_W-1){1'b1}}};
        end else begin : g_rq_same
            assign rq_in = acc_m_acc;
        end
    endgenerate

    wire              rq_m_valid, rq_m_sat;
    wire [ACT_W-1:0]  rq_m_data;

    reg [RQ_M_W-1:0] rq_mult;
    always @* begin
        case (stage_reg)
            ST_Q:    rq_mult = M_Q64[RQ_M_W-1:0];
            ST_K:    rq_mult = M_K64[RQ_M_W-1:0];
            ST_V:    rq_mult = M_V64[RQ_M_W-1:0];
            ST_SC:   rq_mult = M_SC64[RQ_M_W-1:0];
            ST_MIX:  rq_mult = M_MIX64[RQ_M_W-1:0];
            ST_PROJ: rq_mult = M_PROJ64[RQ_M_W-1:0];
            ST_UP:   rq_mult = M_UP64[RQ_M_W-1:0];
            ST_DOWN: rq_mult = M_DOWN64[RQ_M_W-1:0];
            ST_LOAD, ST_LN1, ST_SM, ST_RES1, ST_LN2, ST_ACT, ST_OUT, ST_DRAIN, ST_SKIP:
                     rq_mult = {RQ_M_W{1'b0}};                                   // not a MAC stage
            default: rq_mult = {RQ_M_W{1'b0}};                                   // unused codes
        endcase
    end

    requant #(
        .IN_W(RQ_IN_W), .M_W(RQ_M_W), .SHIFT(RQ_SHIFT), .OUT_W(ACT_W), .ROUND_MODE(ROUND_MODE)
    ) u_rq (
        .clk(clk), .rst(rst),
        .s_valid(acc_m_valid), .s_ready(rq_s_ready), .s_data(rq_in), .s_mult(rq_mult),
        .m_valid(rq_m_valid), .m_ready(1'b1), .m_data(rq_m_data), .m_sat(rq_m_sat)
    );

    // ---- streamed units ----------------------------------------------------------------------------------
    wire              ln1_s_ready, ln1_m_valid, ln1_m_last, ln1_err;
    wire              ln2_s_ready, ln2_m_valid, ln2_m_last, ln2_err;
    wire [ACT_W-1:0]  ln1_m_data, ln2_m_data;

    layernorm #(
        .D(D_MODEL), .IN_W(ACT_W), .SHIFT(LN1_SHIFT), .RMS(0), .MEAN_G(LN1_MEAN_G), .EPS_G(LN1_EPS_G),
        .EPS(LN1_EPS), .N_F(LN1_N_F), .RSQ_K(LN1_RSQ_K), .RSQ_W(LN1_RSQ_W), .SQD_F(LN1_SQD_F), .SQD(LN1_SQD),
        .G_W(LN1_G_W), .G_F(LN1_G_F), .B_W(LN1_B_W), .B_F(LN1_B_F), .OUT_W(ACT_W), .OUT_F(LN1_OUT_F),
        .OUT_RNE(LN1_OUT_RNE), .GAMMA_MEMFILE(LN1_G_MEMFILE), .BETA_MEMFILE(LN1_B_MEMFILE)
    ) u_ln1 (
        .clk(clk), .rst(rst),
        .s_data(f_data_reg), .s_valid(f_valid_reg && is_ln1), .s_ready(ln1_s_ready), .s_last(f_last_reg),
        .m_data(ln1_m_data), .m_valid(ln1_m_valid), .m_ready(1'b1), .m_last(ln1_m_last),
        .framing_err(ln1_err)
    );

    layernorm #(
        .D(D_MODEL), .IN_W(ACT_W), .SHIFT(LN2_SHIFT), .RMS(0), .MEAN_G(LN2_MEAN_G), .EPS_G(LN2_EPS_G),
        .EPS(LN2_EPS), .N_F(LN2_N_F), .RSQ_K(LN2_RSQ_K), .RSQ_W(LN2_RSQ_W), .SQD_F(LN2_SQD_F), .SQD(LN2_SQD),
        .G_W(LN2_G_W), .G_F(LN2_G_F), .B_W(LN2_B_W), .B_F(LN2_B_F), .OUT_W(ACT_W), .OUT_F(LN2_OUT_F),
        .OUT_RNE(LN2_OUT_RNE), .GAMMA_MEMFILE(LN2_G_MEMFILE), .BETA_MEMFILE(LN2_B_MEMFILE)
    ) u_ln2 (
        .clk(clk), .rst(rst),
        .s_data(f_data_reg), .s_valid(f_valid_reg && is_ln2), .s_ready(ln2_s_ready), .s_last(f_last_reg),
        .m_data(ln2_m_data), .m_valid(ln2_m_valid), .m_ready(1'b1), .m_last(ln2_m_last),
        .framing_err(ln2_err)
    );

    // softmax over keys, causal mask
    wire              sm_s_ready, sm_m_valid, sm_m_last;
    wire [PROB_W-1:0] sm_m_data;

    softmax_row #(
        .IN_W(ACT_W), .IN_F(SM_IN_F), .N_MAX(SM_N_MAX), .LUT_BITS(SM_LUT_BITS), .LUT_W(SM_LUT_W),
        .GUARD(SM_GUARD), .OUT_W(PROB_W), .OUT_F(SM_OUT_F), .LOG2E_F(SM_LOG2E_F), .LOG2E(SM_LOG2E),
        .K(SM_K), .EXP2_MEMFILE(EXP2_MEMFILE)
    ) u_sm (
        .clk(clk), .rst(rst),
        .s_valid(f_valid_reg && is_sm), .s_ready(sm_s_ready), .s_data(f_data_reg),
        .s_mask(f_mask_reg), .s_last(f_last_reg),
        .m_valid(sm_m_valid), .m_ready(1'b1), .m_data(sm_m_data), .m_last(sm_m_last)
    );

    // activation: requantise up into the table's input format, look up
    wire                rqa_s_ready, rqa_m_valid, rqa_m_sat;
    wire [ACT_IN_W-1:0] rqa_m_data;
    wire                act_s_ready, act_m_valid, act_m_last;
    wire [ACT_W-1:0]    act_m_data;

    requant #(
        .IN_W(ACT_W), .M_W(1), .SHIFT(ACT_SHIFT), .OUT_W(ACT_IN_W), .ROUND_MODE(ROUND_MODE)
    ) u_rqa (
        .clk(clk), .rst(rst),
        .s_valid(f_valid_reg && is_act), .s_ready(rqa_s_ready), .s_data(f_data_reg), .s_mult(1'b1),
        .m_valid(rqa_m_valid), .m_ready(act_s_ready), .m_data(rqa_m_data), .m_sat(rqa_m_sat)
    );

    act_table #(
        .IN_W(ACT_IN_W), .OUT_W(ACT_W), .LANES(1), .TABLE_MEMFILE(ACT_TABLE_MEMFILE)
    ) u_act (
        .clk(clk), .rst(rst),
        .s_data(rqa_m_data), .s_valid(rqa_m_valid), .s_ready(act_s_ready), .s_last(1'b0),
        .m_data(act_m_data), .m_valid(act_m_valid), .m_ready(1'b1), .m_last(act_m_last)
    );

    // residual adds: x + proj (RES1), res1 + down (OUT)
    wire [ACT_W-1:0] res_y;
    layer_sat_add #(.W(ACT_W)) u_res (.a(f_data_reg), .b(f_b_reg), .y(res_y));

    // ---- the consumer of the fetch register in each stage ---------------------------------------------
    always @* begin
        case (stage_reg)
            ST_LN1:   f_ready = ln1_s_ready;
            ST_LN2:   f_ready = ln2_s_ready;
            ST_SM:    f_ready = sm_s_ready;
            ST_ACT:   f_ready = rqa_s_ready;
            ST_DRAIN: f_ready = m_ready;
            ST_Q, ST_K, ST_V, ST_SC, ST_MIX, ST_PROJ, ST_UP, ST_DOWN:
                      f_ready = op_ready;                       // MAC stages
            ST_RES1, ST_OUT: f_ready = 1'b1;                    // written in the cycle they are fetched
            ST_LOAD, ST_SKIP: f_ready = 1'b1;                   // the nest is idle
            default:  f_ready = 1'b1;                           // unused codes
        endcase
    end

    // ---- write-back: every stage writes its outputs in order ---------------------------------------------
    reg  [CW-1:0]    wr_ptr_reg;
    reg              wr_en;
    reg  [ACT_W-1:0] wr_data;
    reg  [CW-1:0]    n_out;
    wire             s_fire = s_valid && (is_load || is_skip);

    always @* begin
        wr_en   = 1'b0;
        wr_data = rq_m_data;
        n_out   = N_SD_C;
        case (stage_reg)
            ST_LOAD: begin wr_en = s_fire; wr_data = s_data; end
            ST_LN1:  begin wr_en = ln1_m_valid; wr_data = ln1_m_data; end
            ST_Q, ST_K, ST_V, ST_MIX, ST_PROJ, ST_DOWN: wr_en = rq_m_valid;
            ST_SC:   begin wr_en = rq_m_valid; n_out = N_HSS_C; end
            ST_SM:   begin wr_en = sm_m_valid; n_out = N_HSS_C; end
            ST_RES1, ST_OUT: begin wr_en = f_valid_reg; wr_data = res_y; end
            ST_LN2:  begin wr_en = ln2_m_valid; wr_data = ln2_m_data; end
            ST_UP:   begin wr_en = rq_m_valid; n_out = N_SF_C; end
            ST_ACT:  begin wr_en = act_m_valid; wr_data = act_m_data; n_out = N_SF_C; end
            ST_DRAIN, ST_SKIP: wr_en = 1'b0;                    // no buffer written
            default: wr_en = 1'b0;                              // unused codes
        endcase
    end

    wire [SD_AW-1:0]  wr_sd  = wr_ptr_reg[SD_AW-1:0];
    wire [HSS_AW-1:0] wr_hss = wr_ptr_reg[HSS_AW-1:0];
    wire [SF_AW-1:0]  wr_sf  = wr_ptr_reg[SF_AW-1:0];

    always @(posedge clk) begin
        if (wr_en) begin
            case (stage_reg)
                ST_LOAD: x_mem[wr_sd]       <= wr_data;
                ST_LN1:  ln1_mem[wr_sd]     <= wr_data;
                ST_Q:    q_mem[wr_sd]       <= wr_data;
                ST_K:    k_mem[wr_sd]       <= wr_data;
                ST_V:    v_mem[wr_sd]       <= wr_data;
                ST_SC:   scores_mem[wr_hss] <= wr_data;
                ST_SM:   probs_mem[wr_hss]  <= sm_m_data;
                ST_MIX:  attn_mem[wr_sd]    <= wr_data;
                ST_PROJ: proj_mem[wr_sd]    <= wr_data;
                ST_RES1: res1_mem[wr_sd]    <= wr_data;
                ST_LN2:  ln2_mem[wr_sd]     <= wr_data;
                ST_UP:   up_mem[wr_sf]      <= wr_data;
                ST_ACT:  act_mem[wr_sf]     <= wr_data;
                ST_DOWN: down_mem[wr_sd]    <= wr_data;
                ST_OUT:  out_mem[wr_sd]     <= wr_data;
                ST_DRAIN, ST_SKIP: ;                            // wr_en is low
                default: ;                                      // unused codes
            endcase
        end
    end

    // ---- stage FSM -------------------------------------------------------------------------------------
    wire m_fire     = f_valid_reg && is_drain && m_ready;
    wire wr_last    = wr_en && (wr_ptr_reg == n_out - ONE_C);          // the stage's last output
    wire frame_end  = (wr_ptr_reg == N_SD_C - ONE_C);                  // LOAD: this is the last word
    wire in_done    = is_load && s_fire && s_last && frame_end;         // a complete frame
    wire in_short   = is_load && s_fire && s_last && !frame_end;        // s_last early: drop the frame
    wire in_long    = is_load && s_fire && !s_last && frame_end;        // s_last missing: drop, skip
    wire skip_done  = is_skip && s_fire && s_last;

    reg       go;                 // the current stage ends at this edge
    reg [4:0] go_to;              // and this one starts
    always @* begin
        go    = 1'b0;
        go_to = ST_LOAD;
        case (stage_reg)
            ST_LOAD: begin
                go    = in_done || in_long;
                go_to = in_long ? ST_SKIP : ST_LN1;
            end
            ST_SKIP:  begin go = skip_done;             go_to = ST_LOAD;  end
            ST_LN1:   begin go = wr_last;               go_to = ST_Q;     end
            ST_Q:     begin go = wr_last;               go_to = ST_K;     end
            ST_K:     begin go = wr_last;               go_to = ST_V;     end
            ST_V:     begin go = wr_last;               go_to = ST_SC;    end
            ST_SC:    begin go = wr_last;               go_to = ST_SM;    end
            ST_SM:    begin go = wr_last;               go_to = ST_MIX;   end
            ST_MIX:   begin go = wr_last;               go_to = ST_PROJ;  end
            ST_PROJ:  begin go = wr_last;               go_to = ST_RES1;  end
            ST_RES1:  begin go = wr_last;               go_to = ST_LN2;   end
            ST_LN2:   begin go = wr_last;               go_to = ST_UP;    end
            ST_UP:    begin go = wr_last;               go_to = ST_ACT;   end
            ST_ACT:   begin go = wr_last;               go_to = ST_DOWN;  end
            ST_DOWN:  begin go = wr_last;               go_to = ST_OUT;   end
            ST_OUT:   begin go = wr_last;               go_to = ST_DRAIN; end
            ST_DRAIN: begin go = m_fire && f_last_reg;  go_to = ST_LOAD;  end
            default:  begin go = 1'b1;                  go_to = ST_LOAD;  end   // unused codes
        endcase
    end

    reg err_reg;

    always @(posedge clk) begin
        seq_start_reg <= 1'b0;
        if (wr_en) begin
            wr_ptr_reg <= wr_ptr_reg + ONE_C;
        end
        if (in_short) begin
            wr_ptr_reg <= {CW{1'b0}};                         // the next word starts a new frame
        end
        if (in_short || in_long || ln1_err || ln2_err) begin
            err_reg <= 1'b1;
        end
        if (go) begin
            stage_reg     <= go_to;
            wr_ptr_reg    <= {CW{1'b0}};
            seq_start_reg <= (go_to != ST_LOAD) && (go_to != ST_SKIP);   // stages with a loop nest
        end
        if (rst) begin
            stage_reg     <= ST_LOAD;
            wr_ptr_reg    <= {CW{1'b0}};
            seq_start_reg <= 1'b0;
            err_reg       <= 1'b0;
        end
    end

    // ---- outputs: registered, zero outside valid beats -------------------------------------------------
    assign s_ready = is_load || is_skip;
    assign m_valid = f_valid_reg && is_drain;
    assign m_data  = m_valid ? f_data_reg : {ACT_W{1'b0}};
    assign m_last  = m_valid && f_last_reg;
    assign stage   = stage_reg;
    assign err     = err_reg;

    // outputs not needed here: the MAC's own requantised output (SHIFT = 0), saturation flags,
    // last flags of units fed whole rows
    wire unused_outs = &{1'b0, mac_m_data, rq_m_sat, rqa_m_sat, ln1_m_last, ln2_m_last, sm_m_last, act_m_last};

endmodule

`resetall

// SPDX-License-Identifier: Apache-2.0
// Language: Verilog 2005

// layer_top_params.vh: the parameter list of layer_top (rtl/layer_top.v), included inside the
// `#( ... )` of layer_top and of its simulation wrapper layer_top_tb, so the two cannot drift.
// layer_top_pass.vh passes every one of them through, in the same order (checked by
// rtl_tests/test_layer_top.py::test_parameter_lists_agree). rtl/README.md maps each to the
// golden set's manifest.
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
    // MAC products per beat (1 = one multiplier), >= 1; 1 when any stage saturates its accumulator
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
    // accumulator width: the default of every stage's <STAGE>_ACC_W
    parameter integer ACC_W = 40,
    // accumulator overflow, the default of every stage's <STAGE>_ACC_SAT: 0 wrap, 1 saturate at
    // every product (needs LANES = 1)
    parameter integer ACC_SAT = 0,
    // q: accumulator width (units.q.mac.ACC_W), A_W + W_W .. 62
    parameter integer Q_ACC_W = ACC_W,
    // q: accumulator overflow (units.q.mac.ACC_SAT): 0 wrap, 1 saturate
    parameter integer Q_ACC_SAT = ACC_SAT,
    // k: accumulator width
    parameter integer K_ACC_W = ACC_W,
    // k: accumulator overflow
    parameter integer K_ACC_SAT = ACC_SAT,
    // v: accumulator width
    parameter integer V_ACC_W = ACC_W,
    // v: accumulator overflow
    parameter integer V_ACC_SAT = ACC_SAT,
    // scores (q.k): accumulator width (units.scores.mac.ACC_W)
    parameter integer SC_ACC_W = ACC_W,
    // scores: accumulator overflow
    parameter integer SC_ACC_SAT = ACC_SAT,
    // attention mix (probs @ v): accumulator width (units.attn.mac.ACC_W)
    parameter integer MIX_ACC_W = ACC_W,
    // attention mix: accumulator overflow
    parameter integer MIX_ACC_SAT = ACC_SAT,
    // proj: accumulator width
    parameter integer PROJ_ACC_W = ACC_W,
    // proj: accumulator overflow
    parameter integer PROJ_ACC_SAT = ACC_SAT,
    // up: accumulator width
    parameter integer UP_ACC_W = ACC_W,
    // up: accumulator overflow
    parameter integer UP_ACC_SAT = ACC_SAT,
    // down: accumulator width
    parameter integer DOWN_ACC_W = ACC_W,
    // down: accumulator overflow
    parameter integer DOWN_ACC_SAT = ACC_SAT,
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

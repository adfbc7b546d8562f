// SPDX-License-Identifier: Apache-2.0
// Language: Verilog 2005

`resetall
`timescale 1ns / 1ps
`default_nettype none

/*
 * layernorm: LayerNorm (RMS = 0) or RMSNorm (RMS = 1) of one row of D elements, with the SLaNC
 * static input scale applied as an arithmetic right shift.
 *
 * Numeric contract (model: refmodel.numerics.units.norm.norm_int / layernorm_int /
 * rmsnorm_int; NormParams.to_hdl() gives every integer parameter; step numbers as there):
 *   x      : s<IN_W>.<IN_F> codes, one per input beat (IN_F never appears in the RTL)
 *   x1     = round_half_up(x / 2^SHIFT)                                   s<X1_W>
 *   S      = sum x1 (exact)                                                 s<S_W>
 *   mu     = round_half_up(S 2^G / D) as ((U M) >> MK) - OFF, exact        (LayerNorm; 0 for RMS)
 *   Q      = sum x1^2 (exact); V = 4^G Q - 2^(G+1) mu S + D mu^2 = sum (x1 2^G - mu)^2
 *   A      = V 4^EPS_G + D EPS                                              u<A_W>
 *   e      = (A_W - bitlen(A)) / 2;  A_t = (A << 2e) >> TR                  u<W_R>
 *   r      = floor(2^RSQ_K / sqrt(A_t))  (rtl/rsqrt.v, exact)
 *   rs     = round_half_up(r SQD / 2^SQD_F)  (0 when A = 0)                  u<RS_W>
 *   n      = round_half_up((x1 2^G - mu) rs / 2^SH), SH = K_EFF - e - EPS_G - N_F   s<N_W>.<N_F>
 *   z      = n gamma + beta 2^(P_F - B_F)       gamma s<G_W>.<G_F>, beta s<B_W>.<B_F>
 *   out    = sat(round(z / 2^(P_F - OUT_F)))   half_up (OUT_RNE = 0) or rne  s<OUT_W>.<OUT_F>
 * Register widths follow the model's width formulas (a few internal products are computed
 * wider); no intermediate can overflow (proof in norm.py, checked in its tests).
 * gamma/beta: D words each, loaded with $readmemh from GAMMA_MEMFILE / BETA_MEMFILE (absolute
 * paths; pass the string parameters with their quotes).
 *
 * Handshake and timing (one row at a time):
 *   input  : D beats on s_* (s_ready high only while a row is being taken). A row is exactly D
 *            beats; s_last is checked, not used: framing_err (sticky until rst) goes high when
 *            s_last disagrees with the beat count.
 *   stats  : m_valid rises 3 RSQ_K + 10 cycles after the last input transfer (mean, variance,
 *            normalise: 3; rsqrt request 1 + rsqrt.v 3 RSQ_K + 3; capture 1; scale 1; load 1).
 *   output : D beats on m_* (m_last on the D-th), one per clock while m_ready is high; the
 *            datapath from the row buffer to the output register is combinational.
 *   The next row is accepted as soon as the last output beat is loaded: about
 *   2 D + 3 RSQ_K + 10 cycles per row at full rate.
 * Reset: synchronous, active high; abandons the row in flight (control state cleared).
 */
module layernorm #(
    // row length (elements per row), 2..4096
    parameter integer D = 64,
    // input code width (s<IN_W>.<IN_F>), 2..32
    parameter integer IN_W = 16,
    // SLaNC shift: x1 = round_half_up(x / 2^SHIFT), 0..IN_W-1
    parameter integer SHIFT = 0,
    // 0: LayerNorm (mean subtracted), 1: RMSNorm (no mean, MEAN_G unused)
    parameter integer RMS = 0,
    // guard bits of the mean (LayerNorm), 0..8
    parameter integer MEAN_G = 4,
    // extra fraction bit pairs of EPS, 0..16
    parameter integer EPS_G = 0,
    // eps/s^2 as an integer in units of 2^-2(IN_F+G+EPS_G) of x/s; D*EPS < 2^(V_W+2*EPS_G)
    parameter [63:0] EPS = 64'd0,
    // fraction bits of the normalised value n
    parameter integer N_F = 12,
    // rsqrt unit K (r = floor(2^RSQ_K / sqrt(A_t))), 1..31
    parameter integer RSQ_K = 31,
    // rsqrt unit input width cap (even); W_R = min(A_W, RSQ_W)
    parameter integer RSQ_W = 24,
    // fraction bits of the sqrt(D) constant
    parameter integer SQD_F = 21,
    // round_half_up(sqrt(D) * 2^SQD_F), from NormParams.sqd (checked below); default: D = 64
    parameter [63:0] SQD = 64'd16777216,
    // gamma code width (s<G_W>.<G_F>)
    parameter integer G_W = 16,
    // gamma fraction bits
    parameter integer G_F = 12,
    // beta code width (s<B_W>.<B_F>)
    parameter integer B_W = 16,
    // beta fraction bits, B_F <= N_F + G_F
    parameter integer B_F = 12,
    // output code width (s<OUT_W>.<OUT_F>)
    parameter integer OUT_W = 16,
    // output fraction bits, OUT_F <= N_F + G_F
    parameter integer OUT_F = 12,
    // output rounding: 0 = half_up (ties toward +inf), 1 = rne (ties to even)
    parameter integer OUT_RNE = 0,
    // absolute path of the gamma table (D words of G_W bits, $readmemh)
    parameter GAMMA_MEMFILE = "",
    // absolute path of the beta table (D words of B_W bits, $readmemh)
    parameter BETA_MEMFILE = ""
) (
    input  wire                 clk,
    input  wire                 rst,

    // input stream: one element per beat
    input  wire [IN_W-1:0]      s_data,
    input  wire                 s_valid,
    output wire                 s_ready,
    input  wire                 s_last,

    // output stream: one element per beat, m_last on the last element of the row
    output wire [OUT_W-1:0]     m_data,
    output wire                 m_valid,
    input  wire                 m_ready,
    output wire                 m_last,

    // sticky: s_last seen on a beat other than the D-th, or missing on the D-th
    output wire                 framing_err
);

    // ---- derived widths (same formulas as refmodel.numerics.units.norm.NormParams) ----------
    localparam integer CLOG2_D    = $clog2(D);
    localparam integer HALF_LOG_D = (CLOG2_D + 1) / 2;
    localparam integer G          = (RMS != 0) ? 0 : MEAN_G;
    localparam integer X1_W       = (SHIFT == 0) ? IN_W : IN_W - SHIFT + 1;
    localparam integer S_W        = X1_W + CLOG2_D;
    localparam integer Y_W        = (RMS != 0) ? X1_W : X1_W + G + 1;
    localparam integer MU_W       = X1_W + G + 1;
    localparam integer Q_W        = 2 * X1_W + CLOG2_D;
    localparam integer V_W        = 2 * (X1_W + G) + CLOG2_D;
    localparam integer A_W0       = V_W + 2 * EPS_G + 1;
    localparam integer A_W        = A_W0 + (A_W0 % 2);
    localparam integer W_R        = (A_W < RSQ_W) ? A_W : RSQ_W;
    localparam integer TR         = A_W - W_R;
    localparam integer RSQ_P      = RSQ_K - W_R / 2;
    localparam integer K_EFF      = RSQ_K + TR / 2;
    localparam integer R_W        = RSQ_K + 1;
    localparam integer RS_W       = RSQ_P + HALF_LOG_D + 3;
    localparam integer N_W        = N_F + HALF_LOG_D + 2;
    localparam integer P_F        = N_F + G_F;
    localparam integer P_W        = N_W + G_W;
    localparam integer BSH        = P_F - B_F;
    localparam integer Z_W0       = (P_W > B_W + BSH) ? P_W : B_W + BSH;
    localparam integer Z_W        = Z_W0 + 1;
    localparam integer OSH        = P_F - OUT_F;
    localparam integer SH_BASE    = K_EFF - EPS_G - N_F;
    localparam integer E_W        = $clog2(A_W / 2 + 1);
    localparam integer SH_W       = $clog2(SH_BASE + 1) + 1;
    localparam integer IDX_W      = (CLOG2_D > 0) ? CLOG2_D : 1;
    // y * rs product and the variable rounding shift (wide enough for 2^(SH-1) too)
    localparam integer PR_W0      = Y_W + RS_W + 1;
    localparam integer PR_W       = (PR_W0 > SH_BASE + 2) ? PR_W0 : SH_BASE + 2;
    // mean by constant multiplication: U = 2 S 2^G + D + 2 D OFF, mu = ((U M) >> MK) - OFF
    localparam integer U_W        = X1_W + G + 1 + CLOG2_D;
    localparam integer MK         = U_W + $clog2(2 * D);
    localparam integer M_W        = U_W + 2;
    localparam [127:0] ONE128     = 128'd1;
    localparam [31:0]  D32        = D;
    localparam [127:0] D128       = ONE128 * D32;
    localparam [127:0] M_C128     = ((ONE128 << MK) + (D128 << 1) - ONE128) / (D128 << 1);
    localparam [127:0] OFF128     = ONE128 << (X1_W - 1 + G);
    localparam [127:0] UCONST128  = D128 + ((D128 << 1) * OFF128);
    localparam [127:0] DEPS128    = {64'd0, EPS} * D128;
    localparam [127:0] SQD128     = {64'd0, SQD};
    // width of the variance-identity intermediate: |each term| < 2^V_W
    localparam integer T_W        = V_W + 4;

    // ---- parameter checks ----------------------------------------------------------------------
    localparam [127:0] FOUR_D_4F  = D128 << (2 * SQD_F + 2);
    localparam [127:0] SQD_SQ4    = 4 * SQD128 * SQD128;
    initial begin
        if (D < 2 || D > 4096 || IN_W < 2 || IN_W > 32 || SHIFT < 0 || SHIFT > IN_W - 1) begin
            $error("%m: illegal D=%0d IN_W=%0d SHIFT=%0d", D, IN_W, SHIFT);
            $finish;
        end
        if (MEAN_G < 0 || MEAN_G > 8 || EPS_G < 0 || EPS_G > 16 || RSQ_K < 1 || RSQ_K > 31) begin
            $error("%m: illegal MEAN_G=%0d EPS_G=%0d RSQ_K=%0d", MEAN_G, EPS_G, RSQ_K);
            $finish;
        end
        if (RSQ_W < 2 || RSQ_W > 62 || (RSQ_W % 2) != 0 || A_W > 62 || RSQ_P < N_F + EPS_G) begin
            $error("%m: illegal RSQ_W=%0d (A_W=%0d, RSQ_P=%0d, N_F=%0d)", RSQ_W, A_W, RSQ_P, N_F);
            $finish;
        end
        if (B_F > P_F || OUT_F > P_F || PR_W0 > 63 || Z_W > 62) begin
            $error("%m: illegal B_F=%0d OUT_F=%0d (P_F=%0d) or widths PR_W=%0d Z_W=%0d", B_F, OUT_F, P_F, PR_W, Z_W);
            $finish;
        end
        if (DEPS128 >= (ONE128 << (V_W + 2 * EPS_G))) begin
            $error("%m: EPS too large: D*EPS must be < 2^%0d", V_W + 2 * EPS_G);
            $finish;
        end
        // SQD = round(sqrt(D 4^SQD_F))  <=>  (2 SQD - 1)^2 <= 4 D 4^SQD_F < (2 SQD + 1)^2
        if (SQD == 0 || SQD_SQ4 - 4 * SQD128 + 1 > FOUR_D_4F || SQD_SQ4 + 4 * SQD128 + 1 <= FOUR_D_4F) begin
            $error("%m: SQD=%0d is not round(sqrt(D=%0d) * 2^%0d)", SQD, D, SQD_F);
            $finish;
        end
        if (GAMMA_MEMFILE == "" || BETA_MEMFILE == "") begin
            $error("%m: GAMMA_MEMFILE and BETA_MEMFILE must be set");
            $finish;
        end
    end

    // ---- memories -------------------------------------------------------------------------------
    reg [X1_W-1:0] x_mem [0:D-1];
    reg [G_W-1:0]  g_mem [0:D-1];
    reg [B_W-1:0]  b_mem [0:D-1];

    initial begin
        $readmemh(GAMMA_MEMFILE, g_mem);
        $readmemh(BETA_MEMFILE, b_mem);
    end

`ifndef SYNTHESIS
    // Load check, alike in 4-state (Icarus) and 2-state (Verilator) simulators: each file is read
    // again into a copy one bit wider whose last word starts as a sentinel (top bit set) that only
    // a file of D words overwrites. (A short file leaves X in Icarus but zeros in Verilator, so
    // the ROM itself cannot tell.)
    /* verilator lint_off UNUSEDSIGNAL */
    reg [G_W:0] g_chk [0:D-1];
    reg [B_W:0] b_chk [0:D-1];
    /* verilator lint_on UNUSEDSIGNAL */
    initial begin
        g_chk[D-1] = {1'b1, {G_W{1'b0}}};
        b_chk[D-1] = {1'b1, {B_W{1'b0}}};
        $readmemh(GAMMA_MEMFILE, g_chk);
        $readmemh(BETA_MEMFILE, b_chk);
        if (g_chk[D-1][G_W] !== 1'b0 || b_chk[D-1][B_W] !== 1'b0) begin
            $error("%m: gamma/beta not loaded from '%0s' / '%0s': fewer than D = %0d words",
                   GAMMA_MEMFILE, BETA_MEMFILE, D);
            $finish;
        end
    end
`endif

    // ---- control --------------------------------------------------------------------------------
    localparam [2:0] ST_IN   = 3'd0;  // taking the row
    localparam [2:0] ST_MEAN = 3'd1;  // mu
    localparam [2:0] ST_VAR  = 3'd2;  // V, A
    localparam [2:0] ST_NORM = 3'd3;  // e, A_t
    localparam [2:0] ST_RSQ  = 3'd4;  // rsqrt request and wait
    localparam [2:0] ST_SCL  = 3'd5;  // rs, SH
    localparam [2:0] ST_OUT  = 3'd6;  // streaming the row out

    reg [2:0]              state_reg;
    reg [IDX_W-1:0]        wr_idx_reg;
    reg [IDX_W-1:0]        rd_idx_reg;
    reg                    framing_err_reg;
    reg signed [S_W-1:0]   sum_reg;
    reg [Q_W-1:0]          sq_reg;
    reg signed [MU_W-1:0]  mu_reg;
    reg [A_W-1:0]          a_reg;
    reg [E_W-1:0]          e_reg;
    reg [W_R-1:0]          at_reg;
    reg                    rsq_req_reg;     // request presented to the rsqrt unit
    reg                    rsq_sent_reg;    // request taken, waiting for the result
    reg [R_W-1:0]          r_reg;
    reg [RS_W-1:0]         rs_reg;
    reg [SH_W-1:0]         sh_reg;
    reg [OUT_W-1:0]        m_data_reg;
    reg                    m_valid_reg;
    reg                    m_last_reg;

    localparam [31:0]      LAST_I   = D - 1;
    localparam [IDX_W-1:0] LAST_IDX = LAST_I[IDX_W-1:0];

    assign s_ready     = (state_reg == ST_IN);
    assign m_data      = m_data_reg;
    assign m_valid     = m_valid_reg;
    assign m_last      = m_last_reg;
    assign framing_err = framing_err_reg;

    wire s_fire   = s_valid && s_ready;
    wire row_last = (wr_idx_reg == LAST_IDX);

    // ---- step 2: SLaNC shift, half_up ---------------------------------------------------------
    wire signed [X1_W-1:0] x1_in;
    generate
        if (SHIFT == 0) begin : g_noshift
            assign x1_in = s_data;
        end else begin : g_shift
            localparam [IN_W:0] XRND = {{IN_W{1'b0}}, 1'b1} << (SHIFT - 1);
            wire signed [IN_W:0] x_ext = $signed({s_data[IN_W-1], s_data}) + $signed(XRND);
            wire signed [IN_W:0] x_sh  = x_ext >>> SHIFT;
            assign x1_in = x_sh[X1_W-1:0];
            wire unused_xsh = &{1'b0, x_sh[IN_W:X1_W]};
        end
    endgenerate

    wire signed [2*X1_W-1:0] x1_sq = x1_in * x1_in;
    wire [Q_W-1:0] x1_sq_ext = {{(Q_W - 2 * X1_W){1'b0}}, x1_sq};
    wire signed [S_W-1:0] x1_sext = {{(S_W - X1_W){x1_in[X1_W-1]}}, x1_in};

    // ---- step 4: mean by exact constant multiplication ----------------------------------------
    localparam integer UM_W = U_W + M_W;
    wire [M_W-1:0]  m_const = M_C128[M_W-1:0];   // M < 2^(U_W+1) + 1
    wire unused_mc = &{1'b0, M_C128[127:M_W]};
    // U = 2^(G+1) S + D + 2 D OFF, computed in UM_W signed bits then known >= 0 and < 2^U_W
    wire signed [UM_W-1:0] s_big   = {{(UM_W - S_W){sum_reg[S_W-1]}}, sum_reg};
    wire signed [UM_W-1:0] u_signed = (s_big <<< (G + 1)) + $signed(UCONST128[UM_W-1:0]);
    wire [U_W-1:0]         u_val   = u_signed[U_W-1:0];
    wire [UM_W-1:0]        um      = {{M_W{1'b0}}, u_val} * {{U_W{1'b0}}, m_const};
    wire [UM_W-1:0]        mu_fl   = um >> MK;
    wire signed [MU_W-1:0] mu_calc = $signed(mu_fl[MU_W-1:0]) - $signed(OFF128[MU_W-1:0]);
    wire unused_mean = &{1'b0, u_signed[UM_W-1:U_W], mu_fl[UM_W-1:MU_W], UCONST128[127:UM_W], OFF128[127:MU_W]};

    // ---- step 6/7: V by the identity, A --------------------------------------------------------
    wire signed [T_W-1:0] mu_t  = {{(T_W - MU_W){mu_reg[MU_W-1]}}, mu_reg};
    wire signed [T_W-1:0] sum_t = {{(T_W - S_W){sum_reg[S_W-1]}}, sum_reg};
    wire signed [T_W-1:0] sq_t  = {{(T_W - Q_W){1'b0}}, sq_reg};
    wire signed [T_W-1:0] d_t   = D128[T_W-1:0];
    wire signed [T_W-1:0] v_t   = (sq_t <<< (2 * G)) - ((mu_t * sum_t) <<< (G + 1)) + d_t * mu_t * mu_t;
    wire [V_W-1:0]        v_val = v_t[V_W-1:0];
    wire unused_v = &{1'b0, v_t[T_W-1:V_W]};
    wire [A_W-1:0]        a_calc = ({{(A_W - V_W){1'b0}}, v_val} << (2 * EPS_G)) + DEPS128[A_W-1:0];
    wire unused_deps = &{1'b0, DEPS128[127:A_W]};

    // ---- step 8/9: normalise (even left shift), truncate to W_R bits ---------------------------
    function [E_W-1:0] norm_shift;  // (A_W - bitlen(a)) / 2, 0 for a = 0 (A_W is even)
        input [A_W-1:0] a;
        integer i;
        reg found;
        reg [E_W-1:0] pairs;  // leading all-zero bit pairs seen so far
        begin
            norm_shift = {E_W{1'b0}};
            pairs = {E_W{1'b0}};
            found = 1'b0;
            for (i = A_W - 2; i >= 0; i = i - 2) begin
                if (!found) begin
                    if (a[i+1] || a[i]) begin
                        found = 1'b1;
                        norm_shift = pairs;
                    end
                    pairs = pairs + 1'b1;
                end
            end
        end
    endfunction

    wire [E_W-1:0] e_calc  = norm_shift(a_reg);
    wire [A_W-1:0] a_norm  = a_reg << {e_calc, 1'b0};
    wire [W_R-1:0] at_calc = a_norm[A_W-1:TR];
    generate
        if (TR > 0) begin : g_tr
            wire unused_tr = &{1'b0, a_norm[TR-1:0]};
        end
    endgenerate
    wire a_zero = (a_reg == {A_W{1'b0}});

    // ---- rsqrt unit ----------------------------------------------------------------------------
    wire           rsq_s_ready;
    wire           rsq_m_valid;
    wire [R_W-1:0] rsq_m_data;
    wire           rsq_m_ready = (state_reg == ST_RSQ) && rsq_sent_reg;

    rsqrt #(.V_W(W_R), .K(RSQ_K)) u_rsqrt (
        .clk(clk), .rst(rst),
        .s_valid(rsq_req_reg), .s_ready(rsq_s_ready), .s_data(at_reg),
        .m_valid(rsq_m_valid), .m_ready(rsq_m_ready), .m_data(rsq_m_data)
    );

    // ---- step 11: rs = round_half_up(r SQD / 2^SQD_F), SH ------------------------------------
    localparam integer RSQD_W = R_W + 64;
    wire [RSQD_W-1:0] r_sqd  = {{64{1'b0}}, r_reg} * {{R_W{1'b0}}, SQD} + ({{(RSQD_W - 1){1'b0}}, 1'b1} << (SQD_F - 1));
    wire [RSQD_W-1:0] rs_sh  = r_sqd >> SQD_F;
    wire [RS_W-1:0]   rs_calc = a_zero ? {RS_W{1'b0}} : rs_sh[RS_W-1:0];
    wire unused_rs = &{1'b0, rs_sh[RSQD_W-1:RS_W]};
    localparam [31:0]     SH_BASE32 = SH_BASE;
    localparam [SH_W-1:0] SH_BASE_C = SH_BASE32[SH_W-1:0];
    wire [SH_W-1:0] sh_calc = SH_BASE_C - {{(SH_W - E_W){1'b0}}, e_reg};

    // ---- output datapath (steps 5, 12-14), combinational from the row buffer -------------------
    wire signed [X1_W-1:0] x1_rd = x_mem[rd_idx_reg];
    wire signed [G_W-1:0]  g_rd  = g_mem[rd_idx_reg];
    wire signed [B_W-1:0]  b_rd  = b_mem[rd_idx_reg];

    wire signed [Y_W-1:0] y_rd;
    generate
        if (RMS != 0) begin : g_rms
            assign y_rd = x1_rd;
            wire unused_mu = &{1'b0, mu_reg};
        end else begin : g_ln
            wire signed [Y_W-1:0] x1_g = {{(Y_W - X1_W){x1_rd[X1_W-1]}}, x1_rd};
            assign y_rd = (x1_g <<< G) - mu_reg;  // Y_W = MU_W
        end
    endgenerate

    wire signed [PR_W-1:0] y_pr   = {{(PR_W - Y_W){y_rd[Y_W-1]}}, y_rd};
    wire signed [PR_W-1:0] rs_pr  = {{(PR_W - RS_W){1'b0}}, rs_reg};
    wire signed [PR_W-1:0] prod   = y_pr * rs_pr;
    wire signed [PR_W-1:0] n_rnd  = (sh_reg == {SH_W{1'b0}}) ? {PR_W{1'b0}} :
                                    $signed({{(PR_W - 1){1'b0}}, 1'b1} << (sh_reg - 1'b1));
    wire signed [PR_W-1:0] n_full = (prod + n_rnd) >>> sh_reg;
    wire signed [N_W-1:0]  n_val  = n_full[N_W-1:0];
    wire unused_n = &{1'b0, n_full[PR_W-1:N_W]};

    wire signed [P_W-1:0]  p_val  = n_val * g_rd;
    wire signed [Z_W-1:0]  p_z    = {{(Z_W - P_W){p_val[P_W-1]}}, p_val};
    wire signed [Z_W-1:0]  b_z    = {{(Z_W - B_W){b_rd[B_W-1]}}, b_rd};
    wire signed [Z_W-1:0]  z_val  = p_z + (b_z <<< BSH);

    // step 14: round by OSH bits (half_up or rne), saturate
    wire signed [Z_W-1:0] z_rnd;
    generate
        if (OSH == 0) begin : g_osh0
            assign z_rnd = z_val;
        end else begin : g_osh
            wire signed [Z_W-1:0] z_fl  = z_val >>> OSH;
            wire                  rbit  = z_val[OSH-1];
            wire                  stk;
            if (OSH > 1) begin : g_stk
                assign stk = |z_val[OSH-2:0];
            end else begin : g_nostk
                assign stk = 1'b0;
            end
            wire up = (OUT_RNE != 0) ? (rbit && (stk || z_fl[0])) : rbit;
            // z_fl + up cannot overflow Z_W bits: |z_fl| <= 2^(Z_W-1-OSH)
            assign z_rnd = z_fl + {{(Z_W - 1){1'b0}}, up};
        end
    endgenerate

    localparam [Z_W-1:0] OUT_MAX_Z = ({{(Z_W - 1){1'b0}}, 1'b1} << (OUT_W - 1)) - 1;
    localparam [Z_W-1:0] OUT_MIN_Z = ~OUT_MAX_Z;
    wire [OUT_W-1:0] out_calc;
    generate
        if (Z_W > OUT_W) begin : g_sat
            assign out_calc = (z_rnd > $signed(OUT_MAX_Z)) ? OUT_MAX_Z[OUT_W-1:0] :
                              (z_rnd < $signed(OUT_MIN_Z)) ? OUT_MIN_Z[OUT_W-1:0] :
                                                             z_rnd[OUT_W-1:0];
        end else if (Z_W == OUT_W) begin : g_same
            assign out_calc = z_rnd;
        end else begin : g_ext
            assign out_calc = {{(OUT_W - Z_W){z_rnd[Z_W-1]}}, z_rnd};
        end
    endgenerate

    wire out_load = (state_reg == ST_OUT) && (!m_valid_reg || m_ready);

    // ---- sequential -----------------------------------------------------------------------------
    always @(posedge clk) begin
        // datapath registers (not reset)
        if (s_fire) begin
            x_mem[wr_idx_reg] <= x1_in;
        end
        if (state_reg == ST_MEAN) begin
            mu_reg <= (RMS != 0) ? {MU_W{1'b0}} : mu_calc;
        end
        if (state_reg == ST_VAR) begin
            a_reg <= a_calc;
        end
        if (state_reg == ST_NORM) begin
            e_reg  <= e_calc;
            at_reg <= at_calc;
        end
        if (rsq_m_valid && rsq_m_ready) begin
            r_reg <= rsq_m_data;
        end
        if (state_reg == ST_SCL) begin
            rs_reg <= rs_calc;
            sh_reg <= sh_calc;
        end
        if (out_load) begin
            m_data_reg <= out_calc;
            m_last_reg <= (rd_idx_reg == LAST_IDX);
        end

        // control
        if (s_fire) begin
            sum_reg    <= ((wr_idx_reg == {IDX_W{1'b0}}) ? {S_W{1'b0}} : sum_reg) + x1_sext;
            sq_reg     <= ((wr_idx_reg == {IDX_W{1'b0}}) ? {Q_W{1'b0}} : sq_reg) + x1_sq_ext;
            if (s_last != row_last) begin
                framing_err_reg <= 1'b1;
            end
            if (row_last) begin
                wr_idx_reg <= {IDX_W{1'b0}};
                state_reg  <= ST_MEAN;
            end else begin
                wr_idx_reg <= wr_idx_reg + 1'b1;
            end
        end
        case (state_reg)
            ST_MEAN: state_reg <= ST_VAR;
            ST_VAR:  state_reg <= ST_NORM;
            ST_NORM: begin
                state_reg   <= ST_RSQ;
                rsq_req_reg <= 1'b1;
            end
            ST_RSQ: begin
                if (rsq_req_reg && rsq_s_ready) begin
                    rsq_req_reg  <= 1'b0;
                    rsq_sent_reg <= 1'b1;
                end
                if (rsq_sent_reg && rsq_m_valid) begin
                    rsq_sent_reg <= 1'b0;
                    state_reg    <= ST_SCL;
                end
            end
            ST_SCL: begin
                state_reg  <= ST_OUT;
                rd_idx_reg <= {IDX_W{1'b0}};
            end
            default: ;
        endcase
        if (out_load) begin
            m_valid_reg <= 1'b1;
            if (rd_idx_reg == LAST_IDX) begin
                rd_idx_reg <= {IDX_W{1'b0}};
                state_reg  <= ST_IN;
            end else begin
                rd_idx_reg <= rd_idx_reg + 1'b1;
            end
        end else if (m_ready) begin
            m_valid_reg <= 1'b0;
        end

        if (rst) begin
            state_reg       <= ST_IN;
            wr_idx_reg      <= {IDX_W{1'b0}};
            rd_idx_reg      <= {IDX_W{1'b0}};
            framing_err_reg <= 1'b0;
            rsq_req_reg     <= 1'b0;
            rsq_sent_reg    <= 1'b0;
            m_valid_reg     <= 1'b0;
        end
    end

endmodule

`resetall

// SPDX-License-Identifier: Apache-2.0
// Language: Verilog 2005

`resetall
`timescale 1ns / 1ps
`default_nettype none

/*
 * fp8_mac: FP8 dot product (OCP e4m3fn or e5m2, FORMAT parameter) with exact products, an exact
 * Kulisch fixed-point accumulator and ONE round-to-nearest-even conversion to fp32 per dot product.
 *
 * Model: refmodel.numerics.units.fp8mac.dot_fp8 (output code) and dot_fp8_acc (m_acc);
 * Fp8MacParams.to_hdl() gives FORMAT, K_MAX, LANES. Numeric contract:
 *   inputs   s_a, s_b: LANES fp8 codes each (lane i at [8*i +: 8]); subnormals exact;
 *   product  (sig_a*sig_b) << (eexp_a + eexp_b - 2): exact, in units of 2**-ACC_FRAC
 *            (ACC_FRAC = 2*(bias+man-1): e4m3fn 18, e5m2 32), magnitude < 2**PROD_W
 *            (e4m3fn 36, e5m2 64); the LANES products of a beat are summed exactly;
 *   acc      s{ACC_W}.{ACC_FRAC}, ACC_W = 1 + PROD_W + clog2(K_MAX) (49 / 77 bits at K_MAX 4096):
 *            exact for dot products of up to K_MAX products (order-independent), wraps mod
 *            2**ACC_W beyond;
 *   output   m_data = fp32 code of acc * 2**-ACC_FRAC with one RNE (fp8_acc_to_fp32); exact zero
 *            gives +0; any NaN input, inf*0, or +inf and -inf products -> 0x7fc00000; otherwise an
 *            infinite product gives +-inf. m_acc = the final accumulator (two's complement).
 * Handshake: valid/ready on both sides, s_last marks the last beat of a dot product (one-beat dot
 * products allowed). Unused lanes of a beat must carry +0 codes (0x00).
 * Latency: m_valid rises one clock after the last beat is accepted; one beat per clock while the
 * output is ready; s_ready = !m_valid || m_ready. m_data is combinational from the output
 * register (normaliser + rounder sit after it), so no input-to-output combinational path exists.
 * Reset: synchronous, active high; clears valid and drops a partly received dot product.
 */
module fp8_mac #(
    // input format: 0 = e4m3fn, 1 = e5m2
    parameter integer FORMAT = 0,
    // products per beat, 1 .. K_MAX
    parameter integer LANES = 1,
    // longest dot product (in products) that is accumulated exactly; sets the guard bits, >= 1
    parameter integer K_MAX = 4096,
    // accumulator width (derived: 1 + PROD_W + clog2(K_MAX); do not override)
    parameter integer ACC_W = 1 + ((FORMAT == 0) ? 36 : 64) + $clog2(K_MAX)
) (
    input  wire                 clk,
    input  wire                 rst,

    // input beats: LANES (a, b) code pairs and last
    input  wire [LANES*8-1:0]   s_a,
    input  wire [LANES*8-1:0]   s_b,
    input  wire                 s_last,
    input  wire                 s_valid,
    output wire                 s_ready,

    // one fp32 result per dot product, plus its exact accumulator
    output wire [31:0]          m_data,
    output wire [ACC_W-1:0]     m_acc,
    output wire                 m_valid,
    input  wire                 m_ready
);

    // accumulator fraction bits: smallest subnormal squared is one unit
    localparam integer ACC_FRAC = (FORMAT == 0) ? 18 : 32;
    // magnitude bits of the largest product: 448**2 < 2**18 -> 36; 57344**2 < 2**32 -> 64
    localparam integer PROD_W = (FORMAT == 0) ? 36 : 64;
    // exact signed beat-sum width
    localparam integer SUM_W = PROD_W + 1 + $clog2(LANES);

    initial begin
        if (FORMAT < 0 || FORMAT > 1 || K_MAX < 1 || LANES < 1 || LANES > K_MAX
            || ACC_W != 1 + PROD_W + $clog2(K_MAX)) begin
            $error("%m: illegal parameters FORMAT=%0d LANES=%0d K_MAX=%0d ACC_W=%0d",
                     FORMAT, LANES, K_MAX, ACC_W);
            $finish;
        end
    end

    // ---------------------------------------------------------------- lanes: decode, product
    wire [LANES*SUM_W-1:0] prod_flat;
    wire [LANES-1:0]       lane_nan, lane_pinf, lane_ninf;
    genvar g;
    generate
        for (g = 0; g < LANES; g = g + 1) begin : g_lane
            wire       sa, sb, na, nb, ia, ib, za, zb;
            wire [3:0] ma, mb;
            wire [4:0] ea, eb;
            fp8_decode #(.FORMAT(FORMAT)) dec_a (
                .code(s_a[8*g +: 8]), .sign(sa), .sig(ma), .eexp(ea),
                .is_nan(na), .is_inf(ia), .is_zero(za));
            fp8_decode #(.FORMAT(FORMAT)) dec_b (
                .code(s_b[8*g +: 8]), .sign(sb), .sig(mb), .eexp(eb),
                .is_nan(nb), .is_inf(ib), .is_zero(zb));
            wire [7:0]        sp    = ma * mb;                        // exact, 0 for NaN/inf lanes
            wire [5:0]        shift = {1'b0, ea} + {1'b0, eb} - 6'd2; // 0 .. 58
            wire [PROD_W-1:0] mag   = {{(PROD_W-8){1'b0}}, sp} << shift;
            wire              neg   = sa ^ sb;
            wire [SUM_W-1:0]  mag_x = {{(SUM_W-PROD_W){1'b0}}, mag};
            assign prod_flat[g*SUM_W +: SUM_W] = neg ? (~mag_x + {{(SUM_W-1){1'b0}}, 1'b1}) : mag_x;
            wire nan_p = na | nb | (ia & zb) | (za & ib);
            wire inf_p = (ia | ib) & ~nan_p;
            assign lane_nan[g]  = nan_p;
            assign lane_pinf[g] = inf_p & ~neg;
            assign lane_ninf[g] = inf_p & neg;
        end
    endgenerate

    reg [SUM_W-1:0] beat_sum;                                 // two's complement, exact
    integer i;
    always @* begin
        beat_sum = {SUM_W{1'b0}};
        for (i = 0; i < LANES; i = i + 1)
            beat_sum = beat_sum + prod_flat[i*SUM_W +: SUM_W];
    end

    // ---------------------------------------------------------------- Kulisch accumulator
    reg  [ACC_W-1:0] acc_reg;        // running sum (not reset: first_reg masks it)
    reg              nan_reg, pinf_reg, ninf_reg;
    reg              first_reg;      // the next accepted beat starts a dot product
    wire [ACC_W-1:0] beat_x;
    generate
        if (ACC_W > SUM_W) begin : g_bx
            assign beat_x = {{(ACC_W-SUM_W){beat_sum[SUM_W-1]}}, beat_sum};
        end else begin : g_bnx
            assign beat_x = beat_sum;
        end
    endgenerate
    wire [ACC_W-1:0] acc_next  = (first_reg ? {ACC_W{1'b0}} : acc_reg) + beat_x;  // wraps
    wire             nan_next  = (~first_reg & nan_reg)  | (|lane_nan);
    wire             pinf_next = (~first_reg & pinf_reg) | (|lane_pinf);
    wire             ninf_next = (~first_reg & ninf_reg) | (|lane_ninf);

    // ---------------------------------------------------------------- output register, rounder
    reg              m_valid_reg;
    reg [ACC_W-1:0]  out_acc_reg;
    reg              out_nan_reg, out_pinf_reg, out_ninf_reg;

    assign s_ready = ~m_valid_reg | m_ready;
    wire fire = s_valid & s_ready;

    always @(posedge clk) begin
        if (fire) begin
            acc_reg   <= acc_next;
            nan_reg   <= nan_next;
            pinf_reg  <= pinf_next;
            ninf_reg  <= ninf_next;
            first_reg <= s_last;
            if (s_last) begin
                out_acc_reg  <= acc_next;
                out_nan_reg  <= nan_next;
                out_pinf_reg <= pinf_next;
                out_ninf_reg <= ninf_next;
            end
        end
        if (fire & s_last)
            m_valid_reg <= 1'b1;
        else if (m_ready)
            m_valid_reg <= 1'b0;

        if (rst) begin
            m_valid_reg  <= 1'b0;
            first_reg    <= 1'b1;
            out_acc_reg  <= {ACC_W{1'b0}};
            out_nan_reg  <= 1'b0;
            out_pinf_reg <= 1'b0;
            out_ninf_reg <= 1'b0;
        end
    end

    fp8_acc_to_fp32 #(.ACC_W(ACC_W), .ACC_FRAC(ACC_FRAC)) rounder (
        .acc(out_acc_reg), .nan(out_nan_reg), .pinf(out_pinf_reg), .ninf(out_ninf_reg),
        .fp32(m_data));

    assign m_acc   = out_acc_reg;
    assign m_valid = m_valid_reg;

endmodule

`resetall

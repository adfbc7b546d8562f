// SPDX-License-Identifier: Apache-2.0
// Language: Verilog 2005

`resetall
`timescale 1ns / 1ps
`default_nettype none

/*
 * mac_dot: signed fixed-point dot product with a wide accumulator and an output requantiser.
 *
 * Model: refmodel.numerics.units.mac.dot_int / dot_acc_int (MacParams.to_hdl() gives these
 * parameters). Numeric contract:
 *   inputs   s_a lanes s{A_W}.fa, s_w lanes s{W_W}.fw (two's complement), s_bias s{B_W}
 *            (sampled on the FIRST beat of each dot product, aligned by << BIAS_LSH);
 *   products exact (A_W+W_W bits); the LANES products of a beat are summed exactly (adder tree);
 *   acc      s{ACC_W}.(fa+fw): starts at bias << BIAS_LSH, then acc = ovf(acc + beat_sum) at every
 *            beat, in beat order, ovf = wrap mod 2**ACC_W (ACC_SAT=0) or clamp (ACC_SAT=1);
 *   output   m_data s{OUT_W}.(fa+fw-SHIFT) = sat_OUT_W(round(acc / 2**SHIFT)), rounding ROUND_MODE
 *            (0 floor, 1 half_up = ties toward +inf, 2 rne; the codes of requant.v);
 *            m_acc = the final accumulator.
 * Handshake: valid/ready on both sides, s_last marks the last beat of a dot product (a dot product
 * may be one beat long). Unused lanes of the last beat must carry zero codes.
 * Latency: m_valid rises one clock after the last beat is accepted; one beat per clock while the
 * output is ready. s_ready = !m_valid || m_ready (the input stalls while a result waits).
 * Reset: synchronous, active high; clears valid and drops a partly received dot product.
 */
module mac_dot #(
    // activation code width, signed, 1..31
    parameter integer A_W = 8,
    // weight code width, signed, 1..31
    parameter integer W_W = 8,
    // products per beat (lane i at bits [i*A_W +: A_W] of s_a and [i*W_W +: W_W] of s_w), >= 1
    parameter integer LANES = 1,
    // accumulator width in bits, A_W+W_W+clog2(LANES) .. 62
    parameter integer ACC_W = 32,
    // accumulator overflow policy at every add: 0 = wrap (mod 2**ACC_W), 1 = saturate
    parameter integer ACC_SAT = 0,
    // bias width in bits, B_W + BIAS_LSH <= ACC_W
    parameter integer B_W = ACC_W,
    // left shift aligning the bias LSB to the accumulator LSB, >= 0
    parameter integer BIAS_LSH = 0,
    // requantiser arithmetic right shift in bits, 0 .. ACC_W-1
    parameter integer SHIFT = 0,
    // requantiser rounding: 0 = floor, 1 = half_up (ties toward +inf), 2 = rne
    parameter integer ROUND_MODE = 2,
    // output width in bits (signed, saturated), 2 .. 62
    parameter integer OUT_W = 8
) (
    input  wire                   clk,
    input  wire                   rst,

    // input beats: LANES (a, w) pairs, the bias (first beat only) and last
    input  wire [LANES*A_W-1:0]   s_a,
    input  wire [LANES*W_W-1:0]   s_w,
    input  wire [B_W-1:0]         s_bias,
    input  wire                   s_last,
    input  wire                   s_valid,
    output wire                   s_ready,

    // one output per dot product
    output wire [OUT_W-1:0]       m_data,
    output wire [ACC_W-1:0]       m_acc,
    output wire                   m_valid,
    input  wire                   m_ready
);

    localparam integer P_W    = A_W + W_W;                  // exact product width
    localparam integer BEAT_W = P_W + $clog2(LANES);        // exact beat-sum width
    localparam integer R_W    = ACC_W - SHIFT + 1;          // rounded value width

    initial begin
        if (A_W < 1 || A_W > 31 || W_W < 1 || W_W > 31 || LANES < 1 || BEAT_W > ACC_W || ACC_W > 62
            || ACC_SAT < 0 || ACC_SAT > 1 || B_W < 1 || BIAS_LSH < 0 || B_W + BIAS_LSH > ACC_W
            || SHIFT < 0 || SHIFT >= ACC_W || ROUND_MODE < 0 || ROUND_MODE > 2 || OUT_W < 2 || OUT_W > 62) begin
            $error("%m: illegal parameters A_W=%0d W_W=%0d LANES=%0d ACC_W=%0d ACC_SAT=%0d B_W=%0d BIAS_LSH=%0d SHIFT=%0d ROUND_MODE=%0d OUT_W=%0d",
                     A_W, W_W, LANES, ACC_W, ACC_SAT, B_W, BIAS_LSH, SHIFT, ROUND_MODE, OUT_W);
            $finish;
        end
    end

    // ---------------------------------------------------------------- bias
    wire [ACC_W-1:0] bias_ext;
    generate
        if (B_W + BIAS_LSH == ACC_W && BIAS_LSH == 0) begin : g_bias_same
            assign bias_ext = s_bias;
        end else if (BIAS_LSH == 0) begin : g_bias_sx
            assign bias_ext = {{(ACC_W-B_W){s_bias[B_W-1]}}, s_bias};
        end else if (B_W + BIAS_LSH == ACC_W) begin : g_bias_sh
            assign bias_ext = {s_bias, {BIAS_LSH{1'b0}}};
        end else begin : g_bias_sx_sh
            assign bias_ext = {{(ACC_W-B_W-BIAS_LSH){s_bias[B_W-1]}}, s_bias, {BIAS_LSH{1'b0}}};
        end
    endgenerate

    // ---------------------------------------------------------------- lane products, beat sum, accumulator
    // One combinational block (not a net per lane): an event-driven simulator evaluates it once
    // per operand change instead of once per lane update, so LANES costs O(LANES) per beat.
    reg  [ACC_W-1:0]         acc_reg;        // running sum (not reset: first_reg masks it)
    reg                      first_reg;      // the next accepted beat starts a dot product
    reg  signed [P_W-1:0]    a_x, w_x;       // one lane's operands, sign-extended
    reg  signed [BEAT_W-1:0] beat_sum;       // exact sum of the beat's products
    reg  signed [ACC_W:0]    base_x, beat_x; // accumulator (or bias) and beat sum, sign-extended
    reg  signed [ACC_W:0]    sum_wide;       // their sum, exact
    reg  [ACC_W-1:0]         acc_next;
    integer i;
    always @* begin
        beat_sum = {BEAT_W{1'b0}};
        for (i = 0; i < LANES; i = i + 1) begin
            a_x = $signed({s_a[i*A_W +: A_W], {W_W{1'b0}}}) >>> W_W;   // sign-extended
            w_x = $signed({s_w[i*W_W +: W_W], {A_W{1'b0}}}) >>> A_W;
            beat_sum = beat_sum + a_x * w_x;            // exact: |a*w| <= 2**(P_W-2)
        end
        base_x   = $signed({first_reg ? bias_ext : acc_reg, 1'b0}) >>> 1;
        beat_x   = $signed({beat_sum, {(ACC_W + 1 - BEAT_W){1'b0}}}) >>> (ACC_W + 1 - BEAT_W);
        sum_wide = base_x + beat_x;
        if (ACC_SAT != 0 && !sum_wide[ACC_W] && sum_wide[ACC_W-1]) begin
            acc_next = {1'b0, {(ACC_W-1){1'b1}}};                // saturate high
        end else if (ACC_SAT != 0 && sum_wide[ACC_W] && !sum_wide[ACC_W-1]) begin
            acc_next = {1'b1, {(ACC_W-1){1'b0}}};                // saturate low
        end else begin
            acc_next = sum_wide[ACC_W-1:0];                      // wrap (or in range)
        end
    end

    // ---------------------------------------------------------------- requantiser
    wire [R_W-1:0] rounded;          // round(acc_next / 2**SHIFT), R_W bits, cannot overflow
    generate
        if (SHIFT == 0) begin : g_noshift
            assign rounded = {acc_next[ACC_W-1], acc_next};
        end else begin : g_shift
            wire [ACC_W-SHIFT-1:0] fl = acc_next[ACC_W-1:SHIFT];   // floor
            wire half = acc_next[SHIFT-1];
            wire sticky;
            if (SHIFT >= 2) begin : g_st
                assign sticky = |acc_next[SHIFT-2:0];
            end else begin : g_nost
                assign sticky = 1'b0;
            end
            wire up = (ROUND_MODE == 2) ? (half & (sticky | fl[0])) :
                      (ROUND_MODE == 1) ? half : 1'b0;
            assign rounded = {fl[ACC_W-SHIFT-1], fl} + {{(R_W-1){1'b0}}, up};
        end
    endgenerate

    wire [OUT_W-1:0] y_next;         // saturated to OUT_W signed bits
    generate
        if (R_W <= OUT_W) begin : g_fits
            if (R_W < OUT_W) begin : g_sx
                assign y_next = {{(OUT_W-R_W){rounded[R_W-1]}}, rounded};
            end else begin : g_eq
                assign y_next = rounded;
            end
        end else begin : g_sat
            // fits iff the R_W-OUT_W+1 top bits are all equal
            wire [R_W-OUT_W:0] top = rounded[R_W-1:OUT_W-1];
            wire fits = (top == {(R_W-OUT_W+1){1'b0}}) || (top == {(R_W-OUT_W+1){1'b1}});
            assign y_next = fits ? rounded[OUT_W-1:0] :
                            rounded[R_W-1] ? {1'b1, {(OUT_W-1){1'b0}}} : {1'b0, {(OUT_W-1){1'b1}}};
        end
    endgenerate

    // ---------------------------------------------------------------- handshake, registers
    reg              m_valid_reg;
    reg [OUT_W-1:0]  m_data_reg;
    reg [ACC_W-1:0]  m_acc_reg;

    assign s_ready = ~m_valid_reg | m_ready;
    wire fire = s_valid & s_ready;

    always @(posedge clk) begin
        if (fire) begin
            acc_reg   <= acc_next;
            first_reg <= s_last;
            if (s_last) begin
                m_data_reg <= y_next;
                m_acc_reg  <= acc_next;
            end
        end
        if (fire & s_last)
            m_valid_reg <= 1'b1;
        else if (m_ready)
            m_valid_reg <= 1'b0;

        if (rst) begin
            m_valid_reg <= 1'b0;
            first_reg   <= 1'b1;
            m_data_reg  <= {OUT_W{1'b0}};
            m_acc_reg   <= {ACC_W{1'b0}};
        end
    end

    assign m_data  = m_data_reg;
    assign m_acc   = m_acc_reg;
    assign m_valid = m_valid_reg;

endmodule

`resetall

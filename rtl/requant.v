// SPDX-License-Identifier: Apache-2.0
// Language: Verilog 2005
`resetall
`timescale 1ns / 1ps
`default_nettype none

/*
 * Requantiser: y = sat_OUT_W( round_SHIFT( x * M ) )
 *
 * Numeric contract (model: refmodel.numerics.units.requant.requant_with_flags):
 *   s_data  x : signed IN_W-bit code (s{IN_W}.f, any f)
 *   s_mult  M : unsigned M_W-bit multiplier, sampled with each beat (tie to a constant for a
 *               static scale; M = 1 is the plain rounding shifter)
 *   P = x * M exact (IN_W + M_W bits); r = P / 2^SHIFT rounded by ROUND_MODE:
 *       0 floor   : P >>> SHIFT
 *       1 half_up : floor + round bit            (ties toward +inf: -2.5 -> -2)
 *       2 rne     : floor + (round & (sticky | lsb))   (ties to even)
 *     round bit = P[SHIFT-1], sticky = |P[SHIFT-2:0]  (round_shift in rounding.py)
 *   m_data  y : r saturated to signed OUT_W bits; m_sat = 1 when saturation changed the value
 * Latency 2 cycles (product register, result register), one beat per clock. The pipeline
 * stalls as a whole: s_ready = !m_valid | m_ready (combinational from m_ready).
 */
module requant #(
    // input code width (signed), >= 2; IN_W + M_W <= 62 (the refmodel's int64 limit)
    parameter integer IN_W       = 32,
    // multiplier width (unsigned), >= 1
    parameter integer M_W        = 16,
    // right shift after the multiply, 0 .. IN_W + M_W
    parameter integer SHIFT      = 16,
    // output code width (signed), >= 2
    parameter integer OUT_W      = 8,
    // rounding of the shift: 0 = floor, 1 = half_up, 2 = rne
    parameter integer ROUND_MODE = 1
) (
    input  wire              clk,
    input  wire              rst,      // synchronous, active high; clears the valid bits

    input  wire              s_valid,
    output wire              s_ready,
    input  wire [IN_W-1:0]   s_data,   // signed code
    input  wire [M_W-1:0]    s_mult,   // unsigned multiplier

    output wire              m_valid,
    input  wire              m_ready,
    output wire [OUT_W-1:0]  m_data,   // signed code
    output wire              m_sat     // saturation flag
);

    // product width with one spare bit: the signed x unsigned product always fits
    localparam integer PW = IN_W + M_W + 1;

    initial begin
        if (IN_W < 2 || M_W < 1 || IN_W + M_W > 62 || SHIFT < 0 || SHIFT > IN_W + M_W ||
            OUT_W < 2 || ROUND_MODE < 0 || ROUND_MODE > 2) begin
            $error("%m: illegal parameters IN_W=%0d M_W=%0d SHIFT=%0d OUT_W=%0d ROUND_MODE=%0d",
                   IN_W, M_W, SHIFT, OUT_W, ROUND_MODE);
            $finish;
        end
    end

    // ---- pipeline control ------------------------------------------------------------------
    reg  v1_reg, v2_reg;
    wire ce = !v2_reg || m_ready;
    assign s_ready = ce;
    assign m_valid = v2_reg;

    // ---- stage 1: exact product ------------------------------------------------------------
    reg  signed [PW-1:0] prod_reg;
    wire signed [PW-1:0] prod_next = $signed({{(M_W + 1){s_data[IN_W-1]}}, s_data}) *
                                     $signed({{(IN_W + 1){1'b0}}, s_mult});

    // ---- stage 2: round and saturate ---------------------------------------------------------
    wire signed [PW-1:0] fl = prod_reg >>> SHIFT;   // floor
    wire                 rnd_bit;
    wire                 sticky;
    generate
        if (SHIFT == 0) begin : g_s0
            assign rnd_bit = 1'b0;
            assign sticky  = 1'b0;
        end else if (SHIFT == 1) begin : g_s1
            assign rnd_bit = prod_reg[0];
            assign sticky  = 1'b0;
        end else begin : g_sn
            assign rnd_bit = prod_reg[SHIFT-1];
            assign sticky  = |prod_reg[SHIFT-2:0];
        end
    endgenerate

    wire inc = (ROUND_MODE == 1) ? rnd_bit :
               (ROUND_MODE == 2) ? (rnd_bit & (sticky | fl[0])) : 1'b0;
    // fl <= 2^(PW-1-SHIFT) - 1, so fl + 1 cannot overflow PW bits when SHIFT >= 1 (inc = 0 else)
    wire signed [PW-1:0] r = fl + {{(PW - 1){1'b0}}, inc};

    wire [OUT_W-1:0] y_next;
    wire             sat_next;
    generate
        if (OUT_W >= PW) begin : g_nosat
            assign y_next   = {{(OUT_W - PW){r[PW-1]}}, r};
            assign sat_next = 1'b0;
        end else begin : g_sat
            // r fits OUT_W bits iff the bits above OUT_W-1 all equal the sign bit
            wire [PW-OUT_W:0] top = r[PW-1:OUT_W-1];
            wire fits = (top == {(PW - OUT_W + 1){1'b0}}) || (top == {(PW - OUT_W + 1){1'b1}});
            assign sat_next = !fits;
            assign y_next   = fits ? r[OUT_W-1:0] :
                              r[PW-1] ? {1'b1, {(OUT_W - 1){1'b0}}}     // most negative
                                      : {1'b0, {(OUT_W - 1){1'b1}}};    // most positive
        end
    endgenerate

    reg [OUT_W-1:0] y_reg;
    reg             sat_reg;
    assign m_data = y_reg;
    assign m_sat  = sat_reg;

    always @(posedge clk) begin
        if (ce) begin
            v1_reg   <= s_valid;
            prod_reg <= prod_next;
            v2_reg   <= v1_reg;
            y_reg    <= y_next;
            sat_reg  <= sat_next;
        end
        if (rst) begin
            v1_reg <= 1'b0;
            v2_reg <= 1'b0;
        end
    end

endmodule

`resetall

// SPDX-License-Identifier: Apache-2.0
// Language: Verilog 2005

`resetall
`timescale 1ns / 1ps
`default_nettype none

/*
 * fp8_acc_to_fp32: signed fixed-point s{ACC_W}.{ACC_FRAC} -> fp32 code with ONE round to nearest
 * even (combinational normaliser: leading-one detector, left normalise, round bit + sticky bit).
 *
 * Model: refmodel.numerics.units.fp8mac.acc_to_fp32(hi, lo, ACC_FRAC, nan, pinf, ninf).
 *   value = acc * 2**-ACC_FRAC; |value| >= 2**-126: 24-bit significand, RNE; a carry out of the
 *   rounding bumps the exponent; a result >= 2**128 after rounding is +-inf (IEEE overflow).
 *   |value| < 2**-126: rounded on the fp32 subnormal grid 2**-149 (tiny values keep their sign as
 *   -0/+0; rounding up to 2**-126 gives the smallest normal). acc == 0 gives +0.
 *   Flags: nan, or pinf and ninf together -> 0x7fc00000; pinf -> 0x7f800000; ninf -> 0xff800000.
 */
module fp8_acc_to_fp32 #(
    // accumulator width in bits (two's complement), >= 2
    parameter integer ACC_W = 49,
    // accumulator fraction bits (may be negative or larger than ACC_W)
    parameter integer ACC_FRAC = 18
) (
    input  wire [ACC_W-1:0] acc,
    input  wire             nan,
    input  wire             pinf,
    input  wire             ninf,
    output reg  [31:0]      fp32
);
    localparam integer XW = ACC_W + 26;      // magnitude, 24 kept bits, round bit, sticky room

    wire             sign = acc[ACC_W-1];
    wire [ACC_W-1:0] mag  = sign ? (~acc + {{(ACC_W-1){1'b0}}, 1'b1}) : acc;  // |MIN| fits unsigned

    integer    i;
    integer    m;          // index of the leading one of mag
    integer    e;          // unbiased exponent of the leading one
    integer    d;          // extra right shift for results below 2**-126 (when > 0)
    reg [XW-1:0] x;        // mag normalised: leading one at bit XW-1
    reg [XW-1:0] y;        // x shifted right by d
    reg [24:0]   q;        // kept significand, then rounded
    reg          rb;       // round bit
    reg          st;       // sticky bit
    reg          inc;

    always @* begin
        m = 0;
        for (i = 0; i < ACC_W; i = i + 1)
            if (mag[i]) m = i;
        x = {mag, 26'd0} << (ACC_W - 1 - m);
        e = m - ACC_FRAC;
        d = (ACC_FRAC - 149) - (m - 23);
        // x has 26 zero bits below the magnitude: while d <= 24 no set bit is shifted out, and for
        // d >= 25 the kept bits and the round bit are all zero, so the result is a signed zero
        // whatever the sticky bit says. Hence no extra sticky for the bits lost here.
        if (d <= 0)
            y = x;
        else if (d >= XW)
            y = {XW{1'b0}};
        else
            y = x >> d;
        q   = {1'b0, y[XW-1 -: 24]};
        rb  = y[XW-25];
        st  = |y[XW-26:0];
        inc = rb & (st | q[0]);
        q   = q + {24'd0, inc};
        if (d > 0) begin
            // subnormal grid: q <= 2**23, and q == 2**23 is the smallest normal (exponent field 1)
            fp32 = {sign, 7'd0, q[23:0]};
        end else begin
            if (q[24]) begin
                q = q >> 1;
                e = e + 1;
            end
            if (e + 127 >= 255)
                fp32 = {sign, 8'hff, 23'd0};
            else
                fp32 = {sign, e[7:0] + 8'd127, q[22:0]};
        end
        if (mag == {ACC_W{1'b0}})
            fp32 = 32'h0000_0000;
        if (pinf) fp32 = 32'h7f80_0000;
        if (ninf) fp32 = 32'hff80_0000;
        if (nan || (pinf && ninf)) fp32 = 32'h7fc0_0000;
    end
endmodule

`resetall

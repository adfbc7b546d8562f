// SPDX-License-Identifier: Apache-2.0
// Language: Verilog 2005

`resetall
`timescale 1ns / 1ps
`default_nettype none

/*
 * fp8_decode: split one OCP FP8 code into integer fields (combinational, no floats).
 *
 * Model: refmodel.numerics.units.fp8mac.decode_fields. For a finite code
 *   value = (-1)**sign * sig * 2**(eexp - BIAS - MAN_W)
 * with sig = {expfield != 0, mantissa} (hidden bit included) and eexp = max(expfield, 1).
 * FORMAT 0 = e4m3fn (bias 7, no inf, NaN = S.1111.111), 1 = e5m2 (bias 15, IEEE inf/NaN).
 * NaN and inf codes report sig = 0 and eexp = 1 (their value is carried by is_nan / is_inf);
 * is_zero is set for +-0 only.
 */
module fp8_decode #(
    // input format: 0 = e4m3fn, 1 = e5m2
    parameter integer FORMAT = 0
) (
    input  wire [7:0] code,
    output wire       sign,
    output wire [3:0] sig,      // significand with hidden bit (e5m2 uses bits [2:0])
    output wire [4:0] eexp,     // effective exponent field max(expfield, 1), 1..31
    output wire       is_nan,
    output wire       is_inf,
    output wire       is_zero
);
    assign sign = code[7];
    generate
        if (FORMAT == 0) begin : g_e4m3fn
            wire [3:0] ef = code[6:3];
            wire [2:0] mf = code[2:0];
            assign is_nan  = (code[6:0] == 7'h7f);
            assign is_inf  = 1'b0;
            assign sig     = is_nan ? 4'd0 : {ef != 4'd0, mf};
            assign eexp    = (ef == 4'd0 || is_nan) ? 5'd1 : {1'b0, ef};
            assign is_zero = (code[6:0] == 7'h00);
        end else begin : g_e5m2
            wire [4:0] ef = code[6:2];
            wire [1:0] mf = code[1:0];
            wire top = (ef == 5'h1f);
            assign is_nan  = top & (mf != 2'd0);
            assign is_inf  = top & (mf == 2'd0);
            assign sig     = top ? 4'd0 : {1'b0, ef != 5'd0, mf};
            assign eexp    = (ef == 5'd0 || top) ? 5'd1 : ef;
            assign is_zero = (code[6:0] == 7'h00);
        end
    endgenerate
endmodule

`resetall

// SPDX-License-Identifier: Apache-2.0
// Language: Verilog 2005

`resetall
`timescale 1ns / 1ps
`default_nettype none

/*
 * layer_sat_add: residual add of two s<W>.<F> codes into s<W>.<F>, saturating.
 *
 * Numeric contract (model: refmodel.layer.quantized.QuantOps.add for operands and result in one
 * fixed format: the exact sum needs no rounding, then `apply_overflow(.., saturate)`):
 *   y = clamp(a + b, -2^(W-1), 2^(W-1) - 1)
 * Combinational. The fraction bits never appear: all three share them.
 */
module layer_sat_add #(
    // code width in bits, 2..62
    parameter integer W = 16
) (
    input  wire [W-1:0] a,
    input  wire [W-1:0] b,
    output wire [W-1:0] y
);

    initial begin
        if (W < 2 || W > 62) begin
            $error("%m: illegal parameter W=%0d", W);
            $finish;
        end
    end

    wire [W:0] sum = {a[W-1], a} + {b[W-1], b};      // exact
    wire       ovf = sum[W] ^ sum[W-1];                // does not fit W bits
    assign y = !ovf ? sum[W-1:0] :
               sum[W] ? {1'b1, {(W - 1){1'b0}}} : {1'b0, {(W - 1){1'b1}}};

endmodule

`resetall

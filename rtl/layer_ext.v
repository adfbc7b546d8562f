// SPDX-License-Identifier: Apache-2.0
// Language: Verilog 2005

`resetall
`timescale 1ns / 1ps
`default_nettype none

/*
 * layer_ext: widen a code to OUT_W bits, sign-extending (SIGNED = 1) or zero-extending
 * (SIGNED = 0); OUT_W = IN_W passes it through. Combinational, exact (value preserved).
 * Used by layer_top to bring every operand to the shared MAC / accumulator widths without
 * zero-width replications.
 */
module layer_ext #(
    // input width in bits, >= 1
    parameter integer IN_W = 8,
    // output width in bits, >= IN_W
    parameter integer OUT_W = 16,
    // 1: two's complement input (sign extension), 0: unsigned input (zero extension)
    parameter integer SIGNED = 1
) (
    input  wire [IN_W-1:0]  in,
    output wire [OUT_W-1:0] out
);

    initial begin
        if (IN_W < 1 || OUT_W < IN_W || SIGNED < 0 || SIGNED > 1) begin
            $error("%m: illegal parameters IN_W=%0d OUT_W=%0d SIGNED=%0d", IN_W, OUT_W, SIGNED);
            $finish;
        end
    end

    generate
        if (OUT_W > IN_W && SIGNED != 0) begin : g_sext
            // arithmetic shift of the left-aligned code: no run-time replication (which Icarus
            // evaluates bit by bit, several times slower, whenever the sign bit toggles)
            wire signed [OUT_W-1:0] left = {in, {(OUT_W - IN_W){1'b0}}};
            assign out = left >>> (OUT_W - IN_W);
        end else if (OUT_W > IN_W) begin : g_zext
            assign out = {{(OUT_W - IN_W){1'b0}}, in};
        end else begin : g_same
            assign out = in;
        end
    endgenerate

endmodule

`resetall

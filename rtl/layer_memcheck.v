// SPDX-License-Identifier: Apache-2.0
// Language: Verilog 2005

`resetall
`timescale 1ns / 1ps
`default_nettype none

/*
 * layer_memcheck: simulation-only load check of a $readmemh file (no ports, no hardware).
 *
 * Loads MEMFILE into a private array one bit wider than the ROM word, whose last word starts
 * as a sentinel with the extra top bit set; the file's words fill the low W bits and clear that
 * bit. If the last word still carries the sentinel, the file held fewer than N words (or was
 * not found): elaboration stops with $error. The check relies on neither X values nor a
 * simulator's warnings, so it works alike in 4-state (Icarus) and 2-state (Verilator)
 * simulators. Under `SYNTHESIS` the module is empty.
 */
module layer_memcheck #(
    // word width of the ROM the file is for, >= 1
    parameter integer W = 8,
    // words the file must hold, >= 1
    parameter integer N = 1,
    // $readmemh file (the ROM's own *_MEMFILE)
    parameter MEMFILE = ""
) ();

`ifndef SYNTHESIS
    reg [W:0] chk_mem [0:N-1];

    initial begin
        if (W < 1 || N < 1) begin
            $error("%m: illegal parameters W=%0d N=%0d", W, N);
            $finish;
        end
        chk_mem[N-1] = {1'b1, {W{1'b0}}};
        $readmemh(MEMFILE, chk_mem);
        if (chk_mem[N-1][W] != 1'b0) begin
            $error("%m: %0s did not load %0d words (check the *_MEMFILE path and its size)", MEMFILE, N);
            $finish;
        end
    end
`endif

endmodule

`resetall

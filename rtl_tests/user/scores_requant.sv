// SPDX-License-Identifier: Apache-2.0
// A user's DUT, written the way a user would (SystemVerilog, own port names), for the
// refmodel.cocotb tutorial (docs/verify.md): attention scores from q.k accumulators.
//
//   out_score = sat_OUT_W( round_half_even( in_acc * MULT / 2^SHIFT ) )
//
// One register stage; in_ready = !out_valid || out_ready. BUG = 1 truncates instead of rounding
// (a wrong DUT the tutorial's scoreboard must catch).
`timescale 1ns / 1ps
`default_nettype none

module scores_requant #(
    parameter int IN_W  = 36,
    parameter int M_W   = 16,
    parameter int OUT_W = 16,
    parameter logic [63:0] MULT = 64'd1,
    parameter int SHIFT = 0,
    parameter bit BUG = 1'b0
) (
    input  logic                    clk,
    input  logic                    rst,
    input  logic                    in_valid,
    output logic                    in_ready,
    input  logic signed [IN_W-1:0]  in_acc,
    output logic                    out_valid,
    input  logic                    out_ready,
    output logic signed [OUT_W-1:0] out_score
);
    localparam int P_W = IN_W + M_W + 1;
    localparam logic signed [P_W-1:0] MAX = (P_W'(1) <<< (OUT_W - 1)) - 1;
    localparam logic signed [P_W-1:0] MIN = -(P_W'(1) <<< (OUT_W - 1));

    logic signed [P_W-1:0] prod, quot, rounded;
    logic [P_W-1:0] low;
    logic round_up;

    always_comb begin
        prod = P_W'(in_acc) * $signed({1'b0, M_W'(MULT)});
        quot = prod >>> SHIFT;
        low = prod & ((P_W'(1) << SHIFT) - 1);
        if (SHIFT == 0 || BUG)
            round_up = 1'b0;
        else
            round_up = (low > (P_W'(1) << (SHIFT - 1))) || (low == (P_W'(1) << (SHIFT - 1)) && quot[0]);
        rounded = quot + P_W'(round_up);
    end

    assign in_ready = !out_valid || out_ready;

    always_ff @(posedge clk) begin
        if (in_valid && in_ready) begin
            out_score <= (rounded > MAX) ? MAX[OUT_W-1:0] : (rounded < MIN) ? MIN[OUT_W-1:0] : rounded[OUT_W-1:0];
            out_valid <= 1'b1;
        end else if (out_ready) begin
            out_valid <= 1'b0;
        end
        if (rst) out_valid <= 1'b0;
    end
endmodule

`default_nettype wire

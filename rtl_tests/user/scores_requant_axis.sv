// SPDX-License-Identifier: Apache-2.0
// scores_requant behind AXI-Stream ports (s_axis_*, m_axis_*; tlast passed through with its beat),
// the way a user's IP often looks: the refmodel.cocotb AXI-Stream example drives it with
// cocotbext-axi.
`timescale 1ns / 1ps
`default_nettype none

module scores_requant_axis #(
    parameter int IN_W  = 36,
    parameter int M_W   = 16,
    parameter int OUT_W = 16,
    parameter logic [63:0] MULT = 64'd1,
    parameter int SHIFT = 0
) (
    input  logic             clk,
    input  logic             rst,
    input  logic [IN_W-1:0]  s_axis_tdata,
    input  logic             s_axis_tvalid,
    output logic             s_axis_tready,
    input  logic             s_axis_tlast,
    output logic [OUT_W-1:0] m_axis_tdata,
    output logic             m_axis_tvalid,
    input  logic             m_axis_tready,
    output logic             m_axis_tlast
);
    scores_requant #(.IN_W(IN_W), .M_W(M_W), .OUT_W(OUT_W), .MULT(MULT), .SHIFT(SHIFT)) u_rq (
        .clk(clk), .rst(rst),
        .in_valid(s_axis_tvalid), .in_ready(s_axis_tready), .in_acc(s_axis_tdata),
        .out_valid(m_axis_tvalid), .out_ready(m_axis_tready), .out_score(m_axis_tdata)
    );

    always_ff @(posedge clk) begin
        if (s_axis_tvalid && s_axis_tready) m_axis_tlast <= s_axis_tlast;
    end
endmodule

`default_nettype wire

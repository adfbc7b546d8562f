// SPDX-License-Identifier: Apache-2.0
// Language: Verilog 2005
`resetall
`timescale 1ns / 1ps
`default_nettype none

/*
 * Exact reciprocal square root: y = floor(2^K / sqrt(V)).
 *
 * Numeric contract (model: refmodel.numerics.units.rsqrt.rsqrt):
 *   s_data V : unsigned V_W bits
 *   m_data y : floor(2^K / sqrt(V)) exactly, unsigned K+1 bits (2^K at V = 1), computed as
 *              isqrt(floor(2^(2K) / V)) (equal for every V >= 1); V = 0 gives 2^(K+1) - 1
 * Structure: serial divider rtl/reciprocal.v (NUM_W = 2K+1, dividend 2^(2K)) then bit-serial
 * rtl/rsqrt_isqrt.v (IN_W = 2K+1, K+1 root bits); the two stages overlap.
 * Latency: m_valid rises 3K + 3 cycles after the input transfer; a new V every 2K + 2 cycles.
 */
module rsqrt #(
    // input width, 1 .. 62
    parameter integer V_W = 32,
    // output scale: y = floor(2^K / sqrt(V)), 1 .. 31 (the divider's dividend is 2^(2K))
    parameter integer K   = 31
) (
    input  wire            clk,
    input  wire            rst,      // synchronous, active high

    input  wire            s_valid,
    output wire            s_ready,
    input  wire [V_W-1:0]  s_data,

    output wire            m_valid,
    input  wire            m_ready,
    output wire [K:0]      m_data
);

    localparam integer NUM_W = 2 * K + 1;

    initial begin
        if (V_W < 1 || V_W > 62 || K < 1 || K > 31) begin
            $error("%m: illegal parameters V_W=%0d K=%0d", V_W, K);
            $finish;
        end
    end

    localparam [NUM_W-1:0] NUM_C = {1'b1, {(2 * K){1'b0}}};
    localparam [NUM_W-1:0] ALL1  = {NUM_W{1'b1}};

    wire             q_valid, q_ready;
    wire [NUM_W-1:0] q;
    wire [V_W-1:0]   q_rem;
    reciprocal #(.NUM_W(NUM_W), .DEN_W(V_W)) u_div (
        .clk(clk), .rst(rst),
        .s_valid(s_valid), .s_ready(s_ready), .s_num(NUM_C), .s_den(s_data),
        .m_valid(q_valid), .m_ready(q_ready), .m_quot(q), .m_rem(q_rem)
    );
    wire unused_rem = &{1'b0, q_rem};

    // V = 0 is the only input whose quotient is all ones (otherwise q <= 2^(2K))
    reg zero_reg;
    always @(posedge clk) begin
        if (q_valid && q_ready) zero_reg <= (q == ALL1);
    end

    wire [K:0] root;
    rsqrt_isqrt #(.IN_W(NUM_W)) u_sqrt (
        .clk(clk), .rst(rst),
        .s_valid(q_valid), .s_ready(q_ready), .s_data(q),
        .m_valid(m_valid), .m_ready(m_ready), .m_data(root)
    );
    assign m_data = zero_reg ? {(K + 1){1'b1}} : root;

endmodule

`resetall

// SPDX-License-Identifier: Apache-2.0
// Language: Verilog 2005
`resetall
`timescale 1ns / 1ps
`default_nettype none

/*
 * Exact unsigned serial restoring divider: Q = floor(A / B), R = A - Q*B, one quotient bit
 * per clock. Used as the reciprocal unit (A = 2^K constant: Q = floor(2^K / B)) by softmax_row
 * and rsqrt.
 *
 * Numeric contract (model: refmodel.numerics.units.reciprocal.divide / reciprocal):
 *   s_num  A : unsigned NUM_W bits (u{NUM_W}.0)
 *   s_den  B : unsigned DEN_W bits
 *   m_quot Q : floor(A / B), unsigned NUM_W bits, exact (no rounding error beyond the floor)
 *   m_rem  R : A mod B, unsigned DEN_W bits
 *   B = 0    : Q = 2^NUM_W - 1 (all ones), R = A mod 2^DEN_W (what the recurrence gives)
 * Latency: m_valid rises NUM_W cycles after the input transfer. One division at a time:
 * s_ready = !busy & (!m_valid | m_ready), so with m_ready high a new operand is taken in the
 * cycle the result leaves (throughput one result per NUM_W + 1 cycles).
 */
module reciprocal #(
    // dividend / quotient width, 1 .. 63
    parameter integer NUM_W = 32,
    // divisor / remainder width, 1 .. 62
    parameter integer DEN_W = 16
) (
    input  wire              clk,
    input  wire              rst,      // synchronous, active high; abandons a division

    input  wire              s_valid,
    output wire              s_ready,
    input  wire [NUM_W-1:0]  s_num,
    input  wire [DEN_W-1:0]  s_den,

    output wire              m_valid,
    input  wire              m_ready,
    output wire [NUM_W-1:0]  m_quot,
    output wire [DEN_W-1:0]  m_rem
);

    // step counter width: holds NUM_W
    localparam integer CW = $clog2(NUM_W + 1);

    initial begin
        if (NUM_W < 1 || NUM_W > 63 || DEN_W < 1 || DEN_W > 62) begin
            $error("%m: illegal parameters NUM_W=%0d DEN_W=%0d", NUM_W, DEN_W);
            $finish;
        end
    end

    reg              busy_reg;
    reg              out_valid_reg;
    reg [NUM_W-1:0]  aq_reg;     // dividend bits shift out at the top, quotient bits in at the bottom
    reg [DEN_W-1:0]  r_reg;      // partial remainder, < divisor (mod 2^DEN_W when divisor = 0)
    reg [DEN_W-1:0]  d_reg;      // divisor
    reg [CW-1:0]     cnt_reg;    // steps left

    assign s_ready = !busy_reg && (!out_valid_reg || m_ready);
    assign m_valid = out_valid_reg;
    assign m_quot  = aq_reg;
    assign m_rem   = r_reg;

    // one restoring step: shift the next dividend bit into the remainder, subtract if it fits
    wire [DEN_W:0]   r_sh  = {r_reg, aq_reg[NUM_W-1]};
    wire             ge    = r_sh >= {1'b0, d_reg};
    wire [DEN_W-1:0] r_sub = r_sh[DEN_W-1:0] - d_reg;   // exact mod 2^DEN_W: the true value is < d
    wire [DEN_W-1:0] r_next = ge ? r_sub : r_sh[DEN_W-1:0];
    wire [NUM_W-1:0] aq_next;
    generate
        if (NUM_W > 1) begin : g_wide
            assign aq_next = {aq_reg[NUM_W-2:0], ge};
        end else begin : g_one
            assign aq_next = ge;
        end
    endgenerate

    wire load = s_valid && s_ready;
    localparam [CW-1:0] ONE = 1;
    localparam [CW-1:0] STEPS = NUM_W[CW-1:0];

    always @(posedge clk) begin
        if (load) begin
            aq_reg  <= s_num;
            r_reg   <= {DEN_W{1'b0}};
            d_reg   <= s_den;
            cnt_reg <= STEPS;
            busy_reg <= 1'b1;
        end else if (busy_reg) begin
            aq_reg  <= aq_next;
            r_reg   <= r_next;
            cnt_reg <= cnt_reg - ONE;
            if (cnt_reg == ONE) begin
                busy_reg      <= 1'b0;
                out_valid_reg <= 1'b1;
            end
        end
        if (out_valid_reg && m_ready) out_valid_reg <= 1'b0;
        if (rst) begin
            busy_reg      <= 1'b0;
            out_valid_reg <= 1'b0;
        end
    end

endmodule

`resetall

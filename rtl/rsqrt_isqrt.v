// SPDX-License-Identifier: Apache-2.0
// Language: Verilog 2005
`resetall
`timescale 1ns / 1ps
`default_nettype none

/*
 * Exact integer square root, bit-serial restoring (digit-by-digit) recurrence, one root bit per
 * clock. Used by rsqrt.v; usable on its own (e.g. a standard deviation).
 *
 * Numeric contract (model: refmodel.numerics.units.rsqrt.isqrt, i.e. math.isqrt):
 *   s_data X : unsigned IN_W bits
 *   m_data Y : floor(sqrt(X)), unsigned OUT_W = ceil(IN_W/2) bits, exact
 * Recurrence (two radicand bits per step, MSB first): rem = 4*rem + next 2 bits; trial =
 * 4*root + 1; if rem >= trial then rem -= trial, root = 2*root + 1 else root = 2*root.
 * Invariant rem <= 2*root, so rem fits OUT_W + 1 bits.
 * Latency: m_valid rises OUT_W cycles after the input transfer. One root at a time:
 * s_ready = !busy & (!m_valid | m_ready).
 */
module rsqrt_isqrt #(
    // radicand width, 1 .. 63
    parameter integer IN_W  = 32,
    // root width (derived; do not override)
    parameter integer OUT_W = (IN_W + 1) / 2
) (
    input  wire              clk,
    input  wire              rst,      // synchronous, active high; abandons a root

    input  wire              s_valid,
    output wire              s_ready,
    input  wire [IN_W-1:0]   s_data,

    output wire              m_valid,
    input  wire              m_ready,
    output wire [OUT_W-1:0]  m_data
);

    localparam integer X_W = 2 * OUT_W;          // radicand padded to an even width
    localparam integer RW  = OUT_W + 1;          // remainder register width
    localparam integer CW  = $clog2(OUT_W + 1);  // step counter width

    initial begin
        if (IN_W < 1 || IN_W > 63 || OUT_W != (IN_W + 1) / 2) begin
            $error("%m: illegal parameters IN_W=%0d OUT_W=%0d (OUT_W must be (IN_W+1)/2)", IN_W, OUT_W);
            $finish;
        end
    end

    reg              busy_reg;
    reg              out_valid_reg;
    reg [X_W-1:0]    x_reg;      // radicand, shifted left two bits per step
    reg [RW-1:0]     rem_reg;
    reg [OUT_W-1:0]  root_reg;
    reg [CW-1:0]     cnt_reg;

    assign s_ready = !busy_reg && (!out_valid_reg || m_ready);
    assign m_valid = out_valid_reg;
    assign m_data  = root_reg;

    wire [X_W-1:0] x_in;
    generate
        if (X_W > IN_W) begin : g_pad
            assign x_in = {1'b0, s_data};
        end else begin : g_even
            assign x_in = s_data;
        end
    endgenerate

    wire [RW+1:0]  rem_sh = {rem_reg, x_reg[X_W-1:X_W-2]};
    wire [RW+1:0]  trial  = {1'b0, root_reg, 2'b01};
    wire           ge     = rem_sh >= trial;
    wire [RW+1:0]  diff   = rem_sh - trial;
    // by the invariant the new remainder is <= 2*root < 2^RW: the top two bits are zero
    wire [RW-1:0]  rem_next = ge ? diff[RW-1:0] : rem_sh[RW-1:0];
    wire           unused_top = &{1'b0, diff[RW+1:RW], rem_sh[RW+1:RW]};
    wire [X_W-1:0] x_next;
    wire [OUT_W-1:0] root_next;
    generate
        if (X_W > 2) begin : g_shift
            assign x_next = {x_reg[X_W-3:0], 2'b00};
        end else begin : g_noshift
            assign x_next = 2'b00;
        end
        if (OUT_W > 1) begin : g_root
            assign root_next = {root_reg[OUT_W-2:0], ge};
        end else begin : g_root1
            assign root_next = ge;
        end
    endgenerate

    wire load = s_valid && s_ready;
    localparam [CW-1:0] ONE   = 1;
    localparam [CW-1:0] STEPS = OUT_W[CW-1:0];

    always @(posedge clk) begin
        if (load) begin
            x_reg    <= x_in;
            rem_reg  <= {RW{1'b0}};
            root_reg <= {OUT_W{1'b0}};
            cnt_reg  <= STEPS;
            busy_reg <= 1'b1;
        end else if (busy_reg) begin
            x_reg    <= x_next;
            rem_reg  <= rem_next;
            root_reg <= root_next;
            cnt_reg  <= cnt_reg - ONE;
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

// SPDX-License-Identifier: Apache-2.0
// Language: Verilog 2005

`resetall
`timescale 1ns / 1ps
`default_nettype none

/*
 * layer_seq: the loop nest of one layer_top stage -- three item loops and a reduction loop.
 *
 * Issues one beat per transfer, in this order (all counters start at 0 on `start`):
 *
 *     for c1 in 0..n1-1: for c2 in 0..n2-1: for c3 in 0..n3-1:      one item (a dot product,
 *         for kk in 0, LANES, 2*LANES, ... < klen:                  or one streamed element
 *             beat (c1, c2, c3, kk); m_last = (kk + LANES >= klen)  with klen = 1)
 *
 * `klen` may depend on the counters (causal attention: a query row's key count); the parent
 * computes it combinationally from c1..c3. `idx` counts the beats transferred since `start`
 * (for streamed stages it is the element index). No arithmetic on data: this is the address
 * generator of layer_top; the parent turns (c1, c2, c3, kk) into buffer and weight addresses.
 *
 * Handshake: m_valid is a register (high from the cycle after `start` until the last beat is
 * transferred); a beat transfers at a rising edge with m_valid & m_ready. `start` restarts the
 * nest at any time. Every loop count must be >= 1 and stay constant while the nest runs.
 * Reset: synchronous, active high; m_valid low.
 */
module layer_seq #(
    // counter / index width in bits, 2..31; every count, klen + LANES and the beat count fit
    parameter integer CW = 16,
    // reduction elements per beat (kk steps by LANES), >= 1
    parameter integer LANES = 1
) (
    input  wire          clk,
    input  wire          rst,

    input  wire          start,     // pulse: clear the counters, begin issuing next cycle
    input  wire [CW-1:0] n1,        // outer loop count, >= 1
    input  wire [CW-1:0] n2,        // middle loop count, >= 1
    input  wire [CW-1:0] n3,        // inner item loop count, >= 1
    input  wire [CW-1:0] klen,      // reduction length of the current item, >= 1

    output wire [CW-1:0] c1,
    output wire [CW-1:0] c2,
    output wire [CW-1:0] c3,
    output wire [CW-1:0] kk,        // first reduction index of the beat
    output wire [CW-1:0] idx,       // beats transferred since start
    output wire          m_last,    // last beat of an item
    output wire          m_valid,
    input  wire          m_ready
);

    initial begin
        if (CW < 2 || CW > 31 || LANES < 1 || LANES >= (1 << (CW - 1))) begin
            $error("%m: illegal parameters CW=%0d LANES=%0d", CW, LANES);
            $finish;
        end
    end

    localparam [CW-1:0] ONE_C   = 1;
    localparam [CW:0]   LANES_C = LANES[CW:0];

    reg [CW-1:0] c1_reg, c2_reg, c3_reg, kk_reg, idx_reg;
    reg          run_reg;

    wire [CW:0] k_next = {1'b0, kk_reg} + LANES_C;
    wire        last   = (k_next >= {1'b0, klen});
    wire        end3   = (c3_reg == n3 - ONE_C);
    wire        end2   = (c2_reg == n2 - ONE_C);
    wire        end1   = (c1_reg == n1 - ONE_C);
    wire        fire   = run_reg && m_ready;

    always @(posedge clk) begin
        if (fire) begin
            idx_reg <= idx_reg + ONE_C;
            if (!last) begin
                kk_reg <= k_next[CW-1:0];
            end else begin
                kk_reg <= {CW{1'b0}};
                if (!end3) begin
                    c3_reg <= c3_reg + ONE_C;
                end else begin
                    c3_reg <= {CW{1'b0}};
                    if (!end2) begin
                        c2_reg <= c2_reg + ONE_C;
                    end else begin
                        c2_reg <= {CW{1'b0}};
                        if (!end1) begin
                            c1_reg <= c1_reg + ONE_C;
                        end else begin
                            c1_reg  <= {CW{1'b0}};
                            run_reg <= 1'b0;
                        end
                    end
                end
            end
        end
        if (start) begin
            c1_reg  <= {CW{1'b0}};
            c2_reg  <= {CW{1'b0}};
            c3_reg  <= {CW{1'b0}};
            kk_reg  <= {CW{1'b0}};
            idx_reg <= {CW{1'b0}};
            run_reg <= 1'b1;
        end
        if (rst) begin
            c1_reg  <= {CW{1'b0}};
            c2_reg  <= {CW{1'b0}};
            c3_reg  <= {CW{1'b0}};
            kk_reg  <= {CW{1'b0}};
            idx_reg <= {CW{1'b0}};
            run_reg <= 1'b0;
        end
    end

    assign c1      = c1_reg;
    assign c2      = c2_reg;
    assign c3      = c3_reg;
    assign kk      = kk_reg;
    assign idx     = idx_reg;
    assign m_last  = last;
    assign m_valid = run_reg;

endmodule

`resetall

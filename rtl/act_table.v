// SPDX-License-Identifier: Apache-2.0
// Language: Verilog 2005

`resetall
`timescale 1ns / 1ps
`default_nettype none

/*
 * act_table: activation by full lookup table (GELU tanh / GELU erf / SiLU, chosen by the file).
 *
 * Numeric contract (model: refmodel.numerics.units.activation.act_lookup, table built by
 * act_table(kind, in_fmt, out_fmt)):
 *   input  lane i: s<IN_W>.<IN_F> (or u<IN_W>.<IN_F>) code; the table address is its bit pattern
 *   output lane i: table[address], s<OUT_W>.<OUT_F> code, =
 *                  sat(round_half_up(f(x) * 2^OUT_F)), x = code * 2^-IN_F, f in float64.
 *   The fraction bits never appear in the RTL: they are baked into the table file, which the
 *   Python model writes (2^IN_W words of OUT_W bits, $readmemh hex, one word per line).
 * Handshake: valid/ready on both sides, last passed through with its beat.
 * Latency: 1 clock (one output register); throughput one beat per clock while m_ready is high.
 * s_ready = !m_valid || m_ready (depends on m_ready only; m_valid never depends on m_ready).
 * Reset: synchronous, active high; clears m_valid only (data registers are not reset).
 */
module act_table #(
    // input code width in bits (table depth 2^IN_W), 1..16
    parameter integer IN_W = 16,
    // output code width in bits, 1..32
    parameter integer OUT_W = 16,
    // elements per beat; each lane reads the same table contents, 1..64
    parameter integer LANES = 1,
    // absolute path of the table file (2^IN_W words); must be set, quotes included on -P
    parameter TABLE_MEMFILE = ""
) (
    input  wire                   clk,
    input  wire                   rst,

    // input stream: lane i at s_data[i*IN_W +: IN_W]
    input  wire [LANES*IN_W-1:0]  s_data,
    input  wire                   s_valid,
    output wire                   s_ready,
    input  wire                   s_last,

    // output stream: lane i at m_data[i*OUT_W +: OUT_W]
    output wire [LANES*OUT_W-1:0] m_data,
    output wire                   m_valid,
    input  wire                   m_ready,
    output wire                   m_last
);

    localparam integer DEPTH = 1 << IN_W;

    initial begin
        if (IN_W < 1 || IN_W > 16) begin
            $error("act_table: IN_W=%0d outside 1..16 (%m)", IN_W);
            $finish;
        end
        if (OUT_W < 1 || OUT_W > 32) begin
            $error("act_table: OUT_W=%0d outside 1..32 (%m)", OUT_W);
            $finish;
        end
        if (LANES < 1 || LANES > 64) begin
            $error("act_table: LANES=%0d outside 1..64 (%m)", LANES);
            $finish;
        end
        if (TABLE_MEMFILE == "") begin
            $error("act_table: TABLE_MEMFILE is not set (%m)");
            $finish;
        end
    end

    reg [OUT_W-1:0] table_mem [0:DEPTH-1];

    initial begin
        $readmemh(TABLE_MEMFILE, table_mem);
    end

`ifndef SYNTHESIS
    // Load check, alike in 4-state (Icarus) and 2-state (Verilator) simulators: the file is read
    // again into a copy one bit wider whose last word starts as a sentinel (top bit set) that only
    // a file of 2^IN_W words overwrites. (A short file leaves X in Icarus but zeros in Verilator,
    // so the table itself cannot tell.)
    /* verilator lint_off UNUSEDSIGNAL */
    reg [OUT_W:0] table_chk [0:DEPTH-1];
    /* verilator lint_on UNUSEDSIGNAL */
    initial begin
        table_chk[DEPTH-1] = {1'b1, {OUT_W{1'b0}}};
        $readmemh(TABLE_MEMFILE, table_chk);
        if (table_chk[DEPTH-1][OUT_W] !== 1'b0) begin
            $error("%m: table not loaded from '%0s': fewer than 2^IN_W = %0d words", TABLE_MEMFILE, DEPTH);
            $finish;
        end
    end
`endif

    reg [LANES*OUT_W-1:0] m_data_reg;
    reg                   m_valid_reg;
    reg                   m_last_reg;

    wire s_fire = s_valid && s_ready;

    assign s_ready = !m_valid_reg || m_ready;
    assign m_data  = m_data_reg;
    assign m_valid = m_valid_reg;
    assign m_last  = m_last_reg;

    genvar i;
    generate
        for (i = 0; i < LANES; i = i + 1) begin : g_lane
            always @(posedge clk) begin
                if (s_fire) begin
                    m_data_reg[i*OUT_W +: OUT_W] <= table_mem[s_data[i*IN_W +: IN_W]];
                end
            end
        end
    endgenerate

    always @(posedge clk) begin
        if (s_fire) begin
            m_last_reg <= s_last;
        end
        if (s_fire) begin
            m_valid_reg <= 1'b1;
        end else if (m_ready) begin
            m_valid_reg <= 1'b0;
        end
        if (rst) begin
            m_valid_reg <= 1'b0;
        end
    end

endmodule

`resetall

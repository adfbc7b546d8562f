// SPDX-License-Identifier: Apache-2.0
// Language: Verilog 2005

`resetall
`timescale 1ns / 1ps
`default_nettype none

/*
 * fp8_mac_hex_tb: simulation-only wrapper that streams $readmemh stimulus into fp8_mac (LANES = 1)
 * and stores every result, so large vector sets (e.g. all 65,536 fp8 x fp8 products) run without
 * per-cycle Python. Not synthesisable.
 *
 * Stimulus file (+STIM=<abs path>): DEPTH words of 17 bits {last, a[7:0], b[7:0]}.
 * Result file (+RESULT=<abs path>): written by $writememh when `dump` rises: NOUT words
 * {m_acc, m_data} (ACC_W + 32 bits), in output order.
 * STALL = 1 gates the source valid and the sink ready with an LFSR (about 3 of 4 cycles on);
 * the source holds valid and data until each transfer (AXI rule).
 */
module fp8_mac_hex_tb #(
    // input format: 0 = e4m3fn, 1 = e5m2
    parameter integer FORMAT = 0,
    // fp8_mac K_MAX (guard bits)
    parameter integer K_MAX = 4096,
    // number of stimulus beats, >= 1
    parameter integer DEPTH = 65536,
    // number of results expected, >= 1
    parameter integer NOUT = 65536,
    // 1 = random source idle and sink backpressure, 0 = full rate
    parameter integer STALL = 0,
    // fp8_mac accumulator width (derived; do not override)
    parameter integer ACC_W = 1 + ((FORMAT == 0) ? 36 : 64) + $clog2(K_MAX)
) (
    input  wire        clk,
    input  wire        rst,
    input  wire        start,
    input  wire        dump,
    output reg         loaded,
    output reg         done,
    output reg  [31:0] count,
    output reg  [31:0] cycles
);
    reg [16:0]         stim [0:DEPTH-1];
    reg [ACC_W+31:0]   res  [0:NOUT-1];
    reg [255*8-1:0]    stim_path;
    reg [255*8-1:0]    res_path;

    initial begin
        loaded = 1'b0;
        if (!$value$plusargs("STIM=%s", stim_path) || !$value$plusargs("RESULT=%s", res_path)) begin
            $error("%m: +STIM=<file> and +RESULT=<file> are required");
            $finish;
        end
        $readmemh(stim_path, stim);
        loaded = 1'b1;
    end

    always @(posedge dump) $writememh(res_path, res);

    // 16-bit maximal LFSR for the stall patterns
    reg [15:0] lfsr;
    always @(posedge clk) begin
        if (rst) lfsr <= 16'hace1;
        else     lfsr <= {lfsr[14:0], lfsr[15] ^ lfsr[13] ^ lfsr[12] ^ lfsr[10]};
    end

    reg         running;
    reg [31:0]  idx;
    reg         v_reg;
    wire        s_ready;
    wire [16:0] word   = stim[idx < DEPTH ? idx : 0];
    wire        accept = v_reg & s_ready;
    wire [31:0] idx_n  = idx + {31'd0, accept};
    wire        gate_v = (STALL == 0) | lfsr[0] | lfsr[3];
    wire        m_ready = (STALL == 0) | lfsr[7] | lfsr[11];
    wire        m_valid;
    wire [31:0] m_data;
    wire [ACC_W-1:0] m_acc;

    always @(posedge clk) begin
        if (rst) begin
            running <= 1'b0;
            idx     <= 32'd0;
            v_reg   <= 1'b0;
            count   <= 32'd0;
            cycles  <= 32'd0;
            done    <= 1'b0;
        end else begin
            if (start) running <= 1'b1;
            if (running & ~done) cycles <= cycles + 32'd1;
            idx <= idx_n;
            if (!v_reg || s_ready)
                v_reg <= running && (idx_n < DEPTH) && gate_v;
            if (m_valid && m_ready) begin
                if (count < NOUT) res[count] <= {m_acc, m_data};
                count <= count + 32'd1;
                if (count == NOUT - 1) done <= 1'b1;
            end
        end
    end

    fp8_mac #(.FORMAT(FORMAT), .LANES(1), .K_MAX(K_MAX)) dut (
        .clk(clk), .rst(rst),
        .s_a(word[15:8]), .s_b(word[7:0]), .s_last(word[16]), .s_valid(v_reg), .s_ready(s_ready),
        .m_data(m_data), .m_acc(m_acc), .m_valid(m_valid), .m_ready(m_ready));

endmodule

`resetall

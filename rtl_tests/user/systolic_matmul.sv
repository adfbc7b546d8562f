// SPDX-License-Identifier: Apache-2.0
// A user's DUT, written the way a user would (SystemVerilog, own port names and algorithm), for the
// refmodel.cocotb tutorial (docs/verify.md, Tutorial 2): an output-stationary systolic array that
// computes one R x C tile of Y = A * W^T + bias per pass.
//
//   Y[r][c] = sat_OUT_W( round_half_up( (sum_k A[r][k] * W[c][k] + (bias[c] <<< BIAS_LSH)) / 2^SHIFT ) )
//
// Input stream, one beat per k (in order), for one tile:  in_a[r] = A[r][k]  (signed A_W),
// in_w[c] = W[c][k]  (signed W_W), in_b[c] = bias[c]  (signed B_W, sampled on the beat with
// in_last), in_last on the tile's final k. Output stream: R beats per tile, out_y[c] = Y[r][c]
// for r = 0 .. R-1, out_last on r = R-1. The tile's next beats are taken once its last row left.
//
// Datapath: A flows right and W flows down through the R x C processing elements (the edges are
// skewed by one cycle per row / column); each PE keeps its own ACC_W-bit accumulator (wrapping;
// 48 bits never wrap for K <= 2^(ACC_W - A_W - W_W)). The bias is added after the last product,
// then one round-half-up shift and a saturation give the output code.
//
// BUG = 1 drops the carry into bit 6 of every PE's accumulator adder (a broken carry chain).
`timescale 1ns / 1ps
`default_nettype none

// verilator lint_off DECLFILENAME
module systolic_pe #(
    parameter int A_W = 16,
    parameter int W_W = 8,
    parameter int ACC_W = 48,
    parameter bit BUG = 1'b0
) (
    input  logic                    clk,
    input  logic                    rst,
    input  logic signed [A_W-1:0]   a_i,
    input  logic                    v_i,      // a_i/w_i form a product of the current tile
    input  logic                    f_i,      // first product of a tile: restart the sum
    input  logic signed [W_W-1:0]   w_i,
    output logic signed [A_W-1:0]   a_o,
    output logic                    v_o,
    output logic                    f_o,
    output logic signed [W_W-1:0]   w_o,
    output logic signed [ACC_W-1:0] acc
);
    localparam int CUT = 6;  // the adder is built from two halves, bits [CUT-1:0] and [ACC_W-1:CUT]

    logic signed [ACC_W-1:0] prod, base, sum;
    logic [CUT:0] lo;
    logic [ACC_W-CUT-1:0] hi, carry;

    assign prod = a_i * w_i;
    assign base = f_i ? '0 : acc;
    assign lo = {1'b0, base[CUT-1:0]} + {1'b0, prod[CUT-1:0]};
    assign carry = BUG ? '0 : {{(ACC_W - CUT - 1){1'b0}}, lo[CUT]};
    assign hi = base[ACC_W-1:CUT] + prod[ACC_W-1:CUT] + carry;
    assign sum = {hi, lo[CUT-1:0]};

    always_ff @(posedge clk) begin
        a_o <= a_i;
        w_o <= w_i;
        f_o <= f_i;
        v_o <= v_i && !rst;
        if (v_i) acc <= sum;
        if (rst) acc <= '0;
    end
endmodule
// verilator lint_on DECLFILENAME

module systolic_matmul #(
    parameter int R = 4,
    parameter int C = 8,
    parameter int A_W = 16,
    parameter int W_W = 8,
    parameter int B_W = 16,
    parameter int OUT_W = 16,
    parameter int ACC_W = 48,
    parameter int BIAS_LSH = 0,
    parameter int SHIFT = 0,
    parameter bit BUG = 1'b0
) (
    input  logic                            clk,
    input  logic                            rst,
    input  logic                            in_valid,
    output logic                            in_ready,
    input  logic [R-1:0][A_W-1:0]           in_a,
    input  logic [C-1:0][W_W-1:0]           in_w,
    input  logic [C-1:0][B_W-1:0]           in_b,
    input  logic                            in_last,
    output logic                            out_valid,
    input  logic                            out_ready,
    output logic [C-1:0][OUT_W-1:0]         out_y,
    output logic                            out_last
);
    localparam int DRAIN = R + C - 2;  // cycles from the last beat at PE(0,0) to PE(R-1,C-1)
    localparam logic signed [ACC_W-1:0] MAX = (ACC_W'(1) <<< (OUT_W - 1)) - 1;
    localparam logic signed [ACC_W-1:0] MIN = -(ACC_W'(1) <<< (OUT_W - 1));
    localparam logic signed [ACC_W-1:0] HALF = SHIFT > 0 ? ACC_W'(1) <<< (SHIFT - 1) : '0;

    typedef enum logic [1:0] {FEED, DRAIN_WAIT, EMIT} state_t;
    state_t state;
    localparam int CNT_W = $clog2(DRAIN + 1) + 1;
    logic [CNT_W-1:0] wait_cnt;
    localparam int ROW_W = R > 1 ? $clog2(R) : 1;
    logic [ROW_W-1:0] row;
    logic first;                      // the next beat starts a tile
    logic [C-1:0][B_W-1:0] bias;
    logic take;

    assign in_ready = (state == FEED);
    assign take = in_valid && in_ready;

    // ---- the array: a/v/f move right, w moves down -------------------------------------------
    wire signed [A_W-1:0]   a_h [R][C+1];
    wire                    v_h [R][C+1];
    wire                    f_h [R][C+1];
    wire signed [W_W-1:0]   w_v [R+1][C];
    wire signed [ACC_W-1:0] acc [R][C];

    genvar r, c;
    generate
        for (r = 0; r < R; r++) begin : g_left          // row r enters r cycles late
            if (r == 0) begin : g_now
                assign a_h[0][0] = in_a[0];
                assign v_h[0][0] = take;
                assign f_h[0][0] = first;
            end else begin : g_late
                logic signed [A_W-1:0] a_d [r];
                logic v_d [r];
                logic f_d [r];
                always_ff @(posedge clk) begin
                    a_d[0] <= in_a[r];
                    v_d[0] <= take && !rst;
                    f_d[0] <= first;
                    for (int i = 1; i < r; i++) begin
                        a_d[i] <= a_d[i-1];
                        v_d[i] <= v_d[i-1] && !rst;
                        f_d[i] <= f_d[i-1];
                    end
                end
                assign a_h[r][0] = a_d[r-1];
                assign v_h[r][0] = v_d[r-1];
                assign f_h[r][0] = f_d[r-1];
            end
        end
        for (c = 0; c < C; c++) begin : g_top           // column c enters c cycles late
            if (c == 0) begin : g_now
                assign w_v[0][0] = in_w[0];
            end else begin : g_late
                logic signed [W_W-1:0] w_d [c];
                always_ff @(posedge clk) begin
                    w_d[0] <= in_w[c];
                    for (int i = 1; i < c; i++) w_d[i] <= w_d[i-1];
                end
                assign w_v[0][c] = w_d[c-1];
            end
        end
        for (r = 0; r < R; r++) begin : g_row
            for (c = 0; c < C; c++) begin : g_col
                systolic_pe #(.A_W(A_W), .W_W(W_W), .ACC_W(ACC_W), .BUG(BUG)) pe (
                    .clk(clk), .rst(rst),
                    .a_i(a_h[r][c]), .v_i(v_h[r][c]), .f_i(f_h[r][c]), .w_i(w_v[r][c]),
                    .a_o(a_h[r][c+1]), .v_o(v_h[r][c+1]), .f_o(f_h[r][c+1]), .w_o(w_v[r+1][c]),
                    .acc(acc[r][c]));
            end
        end
    endgenerate

    // ---- control: feed a tile, wait for the wavefront to leave the array, emit R rows ----------
    always_ff @(posedge clk) begin
        if (rst) begin
            state <= FEED;
            first <= 1'b1;
            row <= '0;
            wait_cnt <= '0;
        end else begin
            case (state)
                FEED: if (take) begin
                    first <= in_last;
                    if (in_last) begin
                        bias <= in_b;
                        state <= DRAIN_WAIT;
                        wait_cnt <= CNT_W'(DRAIN);
                    end
                end
                DRAIN_WAIT: begin
                    if (wait_cnt <= 1) begin
                        state <= EMIT;
                        row <= '0;
                    end
                    wait_cnt <= wait_cnt - 1'b1;
                end
                EMIT: if (out_ready) begin
                    if (row == ROW_W'(R - 1)) begin
                        state <= FEED;
                        row <= '0;
                    end else begin
                        row <= row + 1'b1;
                    end
                end
                default: state <= FEED;
            endcase
        end
    end

    // ---- output row: bias, round half up, saturate ---------------------------------------------
    generate
        for (c = 0; c < C; c++) begin : g_out
            logic signed [ACC_W-1:0] b_ext, total, q;
            assign b_ext = {{(ACC_W - B_W){bias[c][B_W-1]}}, bias[c]};
            assign total = acc[row][c] + (b_ext <<< BIAS_LSH);
            assign q = (total + HALF) >>> SHIFT;
            assign out_y[c] = (q > MAX) ? MAX[OUT_W-1:0] : (q < MIN) ? MIN[OUT_W-1:0] : q[OUT_W-1:0];
        end
    endgenerate
    assign out_valid = (state == EMIT);
    assign out_last = (state == EMIT) && (row == ROW_W'(R - 1));
endmodule

`default_nettype wire

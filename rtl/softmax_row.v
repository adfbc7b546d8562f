// SPDX-License-Identifier: Apache-2.0
// Language: Verilog 2005
`resetall
`timescale 1ns / 1ps
`default_nettype none

/*
 * Softmax of one row: base-2 exp from a LUT, exact sum, exact reciprocal, rounding multiply.
 *
 * Numeric contract (model: refmodel.numerics.units.softmax.softmax, hw_algorithms.md 4.2):
 *   s_data x : signed s{IN_W}.{IN_F}; s_mask = 1 excludes the element (output 0, not in the max
 *              or the sum: causal attention); s_last marks the row's last element (N <= N_MAX;
 *              an N_MAX-th element without s_last ends the row anyway)
 *   xmax = max of unmasked x; d = xmax - x (u{IN_W}.{IN_F})
 *   t = d * LOG2E (LOG2E = round(log2(e) * 2^LOG2E_F), 23637 for Q2.14), rounded half up to
 *       LUT_BITS fraction bits; q = integer part, k = fraction index
 *   e = (EXP2_LUT[k] << GUARD) >> q (floor), 0 when q >= LUT_W + GUARD; u{E_W}.{E_W-1}
 *   S = sum e (exact); R = floor(2^K / S) from the serial divider (rtl/reciprocal.v)
 *   m_data y = (e*R + 2^(K-OUT_F-1)) >> (K-OUT_F) (half up), saturated to 2^OUT_W - 1:
 *       UQ(OUT_W-OUT_F).OUT_F; m_last on the row's last output. Fully masked row: all 0.
 * Timing: the row is buffered (N_MAX entries). Phases: load N cycles (one element per cycle),
 * exp/sum N cycles, divide K+3 cycles, output N cycles (one per cycle, registered): 3N + K + 3
 * cycles per row back to back. The next row is accepted once the last output of the current
 * row has been registered. m_valid rises N + K + 4 cycles after the edge that takes the last
 * input.
 * EXP2_LUT: 2^LUT_BITS words of LUT_W bits, loaded with $readmemh from EXP2_MEMFILE (absolute
 * path, written by refmodel.numerics.units.exp2.write_exp2_lut); entry 0 must be 2^(LUT_W-1).
 */
module softmax_row #(
    // input width (signed), 2 .. 32
    parameter integer IN_W     = 16,
    // input fraction bits
    parameter integer IN_F     = 8,
    // maximum row length (buffer depth), >= 1
    parameter integer N_MAX    = 64,
    // fraction bits of t = d*log2(e) after rounding; the LUT has 2^LUT_BITS entries, >= 1
    parameter integer LUT_BITS = 6,
    // LUT word width: entries are UQ1.(LUT_W-1)
    parameter integer LUT_W    = 16,
    // guard bits appended below the LUT word before the shift by q
    parameter integer GUARD    = 4,
    // output width (unsigned)
    parameter integer OUT_W    = 8,
    // output fraction bits (OUT_W = OUT_F: UQ0.OUT_F, 1.0 saturates to all ones)
    parameter integer OUT_F    = 8,
    // fraction bits of the log2(e) constant
    parameter integer LOG2E_F  = 14,
    // round_half_up(log2(e) * 2^LOG2E_F): 23637 for LOG2E_F = 14 (refmodel exp2.log2e_code)
    parameter integer LOG2E    = 23637,
    // reciprocal scale: R = floor(2^K / S); default keeps >= 16 significant bits in R, <= 62
    parameter integer K        = (LUT_W + GUARD - 1) + $clog2(N_MAX) + 16,
    // $readmemh file of EXP2_LUT (absolute path, quoted when passed on a command line)
    parameter        EXP2_MEMFILE = "exp2_lut.hex"
) (
    input  wire              clk,
    input  wire              rst,      // synchronous, active high; drops the row in flight

    input  wire              s_valid,
    output wire              s_ready,
    input  wire [IN_W-1:0]   s_data,   // signed score
    input  wire              s_mask,   // 1 = masked out
    input  wire              s_last,

    output wire              m_valid,
    input  wire              m_ready,
    output wire [OUT_W-1:0]  m_data,   // unsigned probability code
    output wire              m_last
);

    // ---- derived widths ---------------------------------------------------------------------
    localparam integer E_W     = LUT_W + GUARD;                 // e width, UQ1.(E_W-1)
    localparam integer NW      = (N_MAX > 1) ? $clog2(N_MAX) : 1; // buffer index width
    localparam integer CW      = $clog2(N_MAX + 1);             // element count width
    localparam integer S_W     = E_W + $clog2(N_MAX);           // exact sum width
    localparam integer R_W     = K - E_W + 2;                   // R < 2^R_W since S >= 2^(E_W-1)
    localparam integer LOG2E_W = LOG2E_F + 1;                   // log2(e) < 2
    localparam integer T_W     = IN_W + LOG2E_W;                // t = d * LOG2E
    localparam integer SH      = IN_F + LOG2E_F - LUT_BITS;     // bits dropped rounding t
    localparam integer TQ_W    = T_W + 1 - SH;                  // rounded t (carry included)
    localparam integer Q_W     = TQ_W - LUT_BITS;               // integer part q
    localparam integer QC_W    = (Q_W > 7) ? Q_W : 7;           // q widened for the compare
    localparam integer P_W     = E_W + R_W;                     // e * R (value <= 2^K)
    localparam integer YSH     = K - OUT_F;                     // final shift
    localparam integer Y_W     = P_W - YSH;                     // rounded y before saturation

    initial begin
        if (IN_W < 2 || IN_W > 32 || N_MAX < 1 || LUT_BITS < 1 || LUT_W < 2 || GUARD < 0 ||
            OUT_W < 1 || OUT_F < 0 || SH < 1 || Q_W < 1 || K > 62 || YSH < 1 || K < E_W - 1 ||
            S_W > 62 || LOG2E >= (1 << LOG2E_W) || LOG2E < (1 << LOG2E_F)) begin
            $error("%m: illegal parameters (IN_W=%0d IN_F=%0d N_MAX=%0d LUT_BITS=%0d LUT_W=%0d GUARD=%0d OUT_W=%0d OUT_F=%0d K=%0d)",
                   IN_W, IN_F, N_MAX, LUT_BITS, LUT_W, GUARD, OUT_W, OUT_F, K);
            $finish;
        end
    end

    // ---- EXP2 LUT (ROM) -----------------------------------------------------------------------
    reg [LUT_W-1:0] lut [0:(1 << LUT_BITS) - 1];
    initial begin
        $readmemh(EXP2_MEMFILE, lut);
    end

`ifndef SYNTHESIS
    // Load check (simulation only; synthesis maps the ROM from the same file), alike in 4-state
    // (Icarus) and 2-state (Verilator) simulators: the file is read again into a copy one bit
    // wider whose last word starts as a sentinel (top bit set) that only a file of 2^LUT_BITS
    // words overwrites; and entry 0 must be 2^(LUT_W-1).
    /* verilator lint_off UNUSEDSIGNAL */
    reg [LUT_W:0] lut_chk [0:(1 << LUT_BITS) - 1];
    /* verilator lint_on UNUSEDSIGNAL */
    initial begin
        lut_chk[(1 << LUT_BITS) - 1] = {1'b1, {LUT_W{1'b0}}};
        $readmemh(EXP2_MEMFILE, lut_chk);
        if (lut_chk[(1 << LUT_BITS) - 1][LUT_W] !== 1'b0) begin
            $error("%m: EXP2_LUT not loaded from '%0s': fewer than 2^LUT_BITS = %0d words", EXP2_MEMFILE,
                   1 << LUT_BITS);
            $finish;
        end
        if (lut_chk[0] !== {2'b01, {(LUT_W - 1){1'b0}}}) begin
            $error("%m: EXP2_LUT from '%0s' not loaded (entry 0 = %h, expected 2^(LUT_W-1))",
                   EXP2_MEMFILE, lut_chk[0][LUT_W-1:0]);
            $finish;
        end
    end
`endif

    // ---- state ----------------------------------------------------------------------------------
    localparam [2:0] ST_LOAD = 3'd0, ST_EXP = 3'd1, ST_DREQ = 3'd2, ST_DWAIT = 3'd3, ST_OUT = 3'd4;
    reg [2:0] state_reg;

    reg [IN_W-1:0] x_mem [0:N_MAX-1];
    reg            k_mem [0:N_MAX-1];   // masked flags
    reg [E_W-1:0]  e_mem [0:N_MAX-1];

    reg [CW-1:0]   cnt_reg;     // load position / exp index / output index
    reg [CW-1:0]   n_reg;       // row length
    reg [IN_W-1:0] xmax_reg;
    reg            any_reg;     // an unmasked element was seen
    reg [S_W-1:0]  sum_reg;
    reg [R_W-1:0]  r_reg;

    localparam [CW-1:0] ONE_C  = 1;
    localparam integer  N_MAX_M1 = N_MAX - 1;
    localparam [CW-1:0] LAST_C = N_MAX_M1[CW-1:0];

    // ---- load ------------------------------------------------------------------------------
    assign s_ready = (state_reg == ST_LOAD);
    wire in_fire = s_valid && s_ready;
    wire row_end = s_last || (cnt_reg == LAST_C);
    wire new_max = !s_mask && (!any_reg || ($signed(s_data) > $signed(xmax_reg)));

    // ---- exp of element cnt_reg ------------------------------------------------------------------
    wire [NW-1:0]   rd_idx = cnt_reg[NW-1:0];
    wire [IN_W-1:0] x_rd   = x_mem[rd_idx];
    wire            mk_rd  = k_mem[rd_idx];
    wire [IN_W-1:0] d      = xmax_reg - x_rd;   // exact for unmasked elements: 0 .. 2^IN_W - 1
    localparam [LOG2E_W-1:0] LOG2E_C = LOG2E[LOG2E_W-1:0];
    wire [T_W-1:0]  t      = {{LOG2E_W{1'b0}}, d} * {{IN_W{1'b0}}, LOG2E_C};
    localparam [T_W:0] T_HALF = {{T_W{1'b0}}, 1'b1} << (SH - 1);
    wire [T_W:0]    t_r    = {1'b0, t} + T_HALF;
    wire [TQ_W-1:0] tq     = t_r[T_W:SH];
    wire [LUT_BITS-1:0] kk = tq[LUT_BITS-1:0];
    wire [Q_W-1:0]  q      = tq[TQ_W-1:LUT_BITS];
    wire [QC_W-1:0] qc;
    generate
        if (QC_W > Q_W) begin : g_qext
            assign qc = {{(QC_W - Q_W){1'b0}}, q};
        end else begin : g_qsame
            assign qc = q;
        end
    endgenerate
    localparam [QC_W-1:0] E_W_C = E_W[QC_W-1:0];
    wire            under  = (qc >= E_W_C);
    wire [E_W-1:0]  lut_g;
    generate
        if (GUARD > 0) begin : g_guard
            assign lut_g = {lut[kk], {GUARD{1'b0}}};
        end else begin : g_noguard
            assign lut_g = lut[kk];
        end
    endgenerate
    wire [E_W-1:0]  e_val  = (under || mk_rd) ? {E_W{1'b0}} : (lut_g >> qc);
    // the low SH bits of t_r only feed the rounding carry (Verilator's unused* convention)
    wire            unused_t_r = &{1'b0, t_r[SH-1:0]};

    // ---- divider --------------------------------------------------------------------------------
    wire          div_s_ready, div_m_valid;
    wire [K:0]    div_quot;
    wire [S_W-1:0] div_rem;
    localparam [K:0] NUM_C = {1'b1, {K{1'b0}}};
    reciprocal #(.NUM_W(K + 1), .DEN_W(S_W)) u_div (
        .clk(clk), .rst(rst),
        .s_valid(state_reg == ST_DREQ), .s_ready(div_s_ready),
        .s_num(NUM_C), .s_den(sum_reg),
        .m_valid(div_m_valid), .m_ready(state_reg == ST_DWAIT),
        .m_quot(div_quot), .m_rem(div_rem)
    );
    // quotient bits above R_W are zero whenever S >= 2^(E_W-1) (every row with an unmasked
    // element); a fully masked row has e = 0 everywhere so R is irrelevant. The remainder is not
    // needed.
    wire unused_div = &{1'b0, div_quot[K:R_W], div_rem};

    // ---- output: y = sat((e*R + half) >> YSH) --------------------------------------------------------
    reg             out_valid_reg;
    reg [OUT_W-1:0] out_data_reg;
    reg             out_last_reg;
    assign m_valid = out_valid_reg;
    assign m_data  = out_data_reg;
    assign m_last  = out_last_reg;

    wire [E_W-1:0]  e_rd   = e_mem[rd_idx];
    wire [P_W-1:0]  prod   = {{R_W{1'b0}}, e_rd} * {{E_W{1'b0}}, r_reg};
    localparam [P_W-1:0] Y_HALF = {{(P_W - 1){1'b0}}, 1'b1} << (YSH - 1);
    wire [P_W-1:0]  prod_r = prod + Y_HALF;
    wire [Y_W-1:0]  y_full = prod_r[P_W-1:YSH];
    wire            unused_prod = &{1'b0, prod_r[YSH-1:0]};
    wire [OUT_W-1:0] y_sat;
    generate
        if (Y_W > OUT_W) begin : g_sat
            assign y_sat = (|y_full[Y_W-1:OUT_W]) ? {OUT_W{1'b1}} : y_full[OUT_W-1:0];
        end else begin : g_nosat
            assign y_sat = {{(OUT_W - Y_W){1'b0}}, y_full};
        end
    endgenerate
    wire out_load = (state_reg == ST_OUT) && (!out_valid_reg || m_ready);

    // ---- sequential -------------------------------------------------------------------------------
    always @(posedge clk) begin
        case (state_reg)
            ST_LOAD: if (in_fire) begin
                x_mem[rd_idx] <= s_data;
                k_mem[rd_idx] <= s_mask;
                if (new_max) begin
                    xmax_reg <= s_data;
                    any_reg  <= 1'b1;
                end
                if (row_end) begin
                    n_reg     <= cnt_reg + ONE_C;
                    cnt_reg   <= {CW{1'b0}};
                    sum_reg   <= {S_W{1'b0}};
                    state_reg <= ST_EXP;
                end else begin
                    cnt_reg <= cnt_reg + ONE_C;
                end
            end
            ST_EXP: begin
                e_mem[rd_idx] <= e_val;
                sum_reg <= sum_reg + {{(S_W - E_W){1'b0}}, e_val};
                if (cnt_reg == n_reg - ONE_C) begin
                    cnt_reg   <= {CW{1'b0}};
                    state_reg <= ST_DREQ;
                end else begin
                    cnt_reg <= cnt_reg + ONE_C;
                end
            end
            ST_DREQ: if (div_s_ready) state_reg <= ST_DWAIT;
            ST_DWAIT: if (div_m_valid) begin
                r_reg     <= div_quot[R_W-1:0];
                state_reg <= ST_OUT;
            end
            ST_OUT: if (out_load) begin
                out_data_reg <= y_sat;
                out_last_reg <= (cnt_reg == n_reg - ONE_C);
                if (cnt_reg == n_reg - ONE_C) begin
                    cnt_reg   <= {CW{1'b0}};
                    any_reg   <= 1'b0;
                    state_reg <= ST_LOAD;
                end else begin
                    cnt_reg <= cnt_reg + ONE_C;
                end
            end
            default: state_reg <= ST_LOAD;
        endcase
        if (out_load) out_valid_reg <= 1'b1;
        else if (m_ready) out_valid_reg <= 1'b0;
        if (rst) begin
            state_reg     <= ST_LOAD;
            cnt_reg       <= {CW{1'b0}};
            any_reg       <= 1'b0;
            out_valid_reg <= 1'b0;
        end
    end

endmodule

`resetall

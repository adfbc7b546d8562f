// SPDX-License-Identifier: Apache-2.0
// A user's DUT, written the way a user would (SystemVerilog, own port names and algorithm), for the
// refmodel.cocotb docs (docs/verify.md, Tutorial 2): LayerNorm over rows of D elements.
//
//   y[i] = sat_OUT_W( round_half_up( (x[i] - mean) / sqrt(var + eps) * g[i] + b[i] ) )
//
// with x in s<IN_W>.<IN_F>, g and b in s<P_W>.<P_F>, y in s<OUT_W>.<OUT_F>. Input stream: one
// beat per element, in_x / in_g / in_b, D beats a row (the row ends on the count). Output stream:
// D beats a row, out_y, out_last on the row's last element. A row is taken, normalised, then
// emitted; the next row's beats are taken after its last output.
//
// Algorithm (not the plan's): with s1 = sum x, s2 = sum x^2 (exact integers),
//   z[i] = D*x[i] - s1,   V = D*s2 - s1^2 + EPSV,   (x[i] - mean) / sqrt(var + eps) = z[i] / sqrt(V)
// where EPSV = round(EPS * D^2 * 4^IN_F). 1/sqrt(V) = 1/sqrt(M) * 2^-k with M = V / 4^k in [1, 4)
// (V shifted two bits a cycle; M kept as Q2.30), 1/sqrt(M) from a 48-entry seed table on the top
// six bits of M (16-bit seeds) and two Newton-Raphson steps y <- y * (3 - M*y^2) / 2 in Q2.30
// (each product truncated); then y[i] = (z[i] * r * g[i] + b[i] << (30 + k)) / 2^(30 + P_F - OUT_F + k)
// rounded half up (one rounding) and saturated.
//
// BUG = 1 truncates the output instead of rounding it (round toward minus infinity).
`timescale 1ns / 1ps
`default_nettype none

module layernorm_alt #(
    parameter int D = 64,
    parameter int IN_W = 16,
    parameter int IN_F = 8,
    parameter int P_W = 16,
    parameter int P_F = 13,
    parameter int OUT_W = 16,
    parameter int OUT_F = 11,
    parameter real EPS = 1e-5,
    parameter bit BUG = 1'b0
) (
    input  logic                    clk,
    input  logic                    rst,
    input  logic                    in_valid,
    output logic                    in_ready,
    input  logic signed [IN_W-1:0]  in_x,
    input  logic signed [P_W-1:0]   in_g,
    input  logic signed [P_W-1:0]   in_b,
    output logic                    out_valid,
    input  logic                    out_ready,
    output logic signed [OUT_W-1:0] out_y,
    output logic                    out_last
);
    localparam int LD = $clog2(D);
    localparam int F = 30;                                 // fraction bits of M and r
    localparam int V_W = 2 * IN_W + 2 * LD + 2;            // V < D^2 * 4^(IN_W-1) + EPSV (even width)
    localparam int Z_W = IN_W + LD + 2;
    localparam int T_W = Z_W + F + 2 + P_W + 2;            // z * r * g
    localparam int MAX_S = (V_W - 2) / 2;
    localparam longint EPSV = longint'(EPS * D * D * (4.0 ** IN_F));   // eps in the units of V (rounded)
    localparam logic signed [T_W-1:0] MAX = (T_W'(1) <<< (OUT_W - 1)) - 1;
    localparam logic signed [T_W-1:0] MIN = -(T_W'(1) <<< (OUT_W - 1));

    typedef enum logic [2:0] {LOAD, VAR, NORM, SEED, NR_SQ, NR_MUL, NR_UPD, EMIT} state_t;
    state_t state;

    logic signed [IN_W-1:0] xs [D];
    logic signed [P_W-1:0]  gs [D];
    logic signed [P_W-1:0]  bs [D];
    logic [LD-1:0] idx;
    logic signed [IN_W+LD:0] s1;
    logic [2*IN_W+LD-1:0] s2;
    logic [V_W-1:0] v;                                     // V, then V * 4^s
    localparam int S_W = $clog2(MAX_S + 1) + 1;
    logic [S_W-1:0] s;
    logic [F+1:0] m;                                       // Q2.30, [1, 4)
    logic [F+1:0] r;                                       // Q2.30 ~ 1/sqrt(m)
    logic [F+3:0] t;                                       // Q4.30 scratch: r^2, then m * r^2
    logic step;                                            // Newton-Raphson step 0 / 1
    logic [15:0] seed;
    logic [5:0] top;

    assign in_ready = (state == LOAD);

    // ---- seed table: round(2^16 / sqrt((i + 0.5) / 16)), i = 16 .. 63 (m in [1, 4)) --------------
    assign top = m[F+1:F-4];
    always_comb begin
        case (top)
            6'd16: seed = 16'd64535; 6'd17: seed = 16'd62664; 6'd18: seed = 16'd60947; 6'd19: seed = 16'd59364;
            6'd20: seed = 16'd57898; 6'd21: seed = 16'd56535; 6'd22: seed = 16'd55265; 6'd23: seed = 16'd54076;
            6'd24: seed = 16'd52961; 6'd25: seed = 16'd51912; 6'd26: seed = 16'd50923; 6'd27: seed = 16'd49989;
            6'd28: seed = 16'd49104; 6'd29: seed = 16'd48265; 6'd30: seed = 16'd47467; 6'd31: seed = 16'd46707;
            6'd32: seed = 16'd45983; 6'd33: seed = 16'd45292; 6'd34: seed = 16'd44630; 6'd35: seed = 16'd43997;
            6'd36: seed = 16'd43390; 6'd37: seed = 16'd42808; 6'd38: seed = 16'd42248; 6'd39: seed = 16'd41710;
            6'd40: seed = 16'd41192; 6'd41: seed = 16'd40693; 6'd42: seed = 16'd40211; 6'd43: seed = 16'd39746;
            6'd44: seed = 16'd39297; 6'd45: seed = 16'd38863; 6'd46: seed = 16'd38443; 6'd47: seed = 16'd38036;
            6'd48: seed = 16'd37642; 6'd49: seed = 16'd37260; 6'd50: seed = 16'd36889; 6'd51: seed = 16'd36529;
            6'd52: seed = 16'd36179; 6'd53: seed = 16'd35840; 6'd54: seed = 16'd35509; 6'd55: seed = 16'd35188;
            6'd56: seed = 16'd34875; 6'd57: seed = 16'd34571; 6'd58: seed = 16'd34274; 6'd59: seed = 16'd33985;
            6'd60: seed = 16'd33703; 6'd61: seed = 16'd33427; 6'd62: seed = 16'd33159; 6'd63: seed = 16'd32897;
            default: seed = 16'd0;
        endcase
    end

    always_ff @(posedge clk) begin
        if (rst) begin
            state <= LOAD;
            idx <= '0;
            s1 <= '0;
            s2 <= '0;
        end else begin
            case (state)
                LOAD: if (in_valid) begin
                    xs[idx] <= in_x;
                    gs[idx] <= in_g;
                    bs[idx] <= in_b;
                    s1 <= s1 + (IN_W + LD + 1)'(in_x);
                    s2 <= s2 + (2 * IN_W + LD)'((2 * IN_W + LD)'(in_x) * (2 * IN_W + LD)'(in_x));
                    idx <= idx + 1'b1;
                    if (idx == LD'(D - 1)) begin
                        idx <= '0;
                        state <= VAR;
                    end
                end
                VAR: begin
                    v <= V_W'(D) * V_W'(s2) - V_W'(s1) * V_W'(s1) + V_W'(EPSV);
                    s <= '0;
                    state <= NORM;
                end
                NORM: if (v[V_W-1:V_W-2] != 2'b00 || s == S_W'(MAX_S)) begin
                    m <= v[V_W-1 -: F + 2];
                    state <= SEED;
                end else begin
                    v <= v << 2;
                    s <= s + 1'b1;
                end
                SEED: begin
                    r <= (F + 2)'(seed) << (F - 16);
                    step <= 1'b0;
                    state <= NR_SQ;
                end
                NR_SQ: begin
                    t <= (F + 4)'((2 * F + 4)'(r) * (2 * F + 4)'(r) >> F);
                    state <= NR_MUL;
                end
                NR_MUL: begin
                    t <= (F + 4)'((2 * F + 6)'(m) * (2 * F + 6)'(t) >> F);
                    state <= NR_UPD;
                end
                NR_UPD: begin
                    r <= (F + 2)'(((2 * F + 6)'(r) * (((2 * F + 6)'(3) << F) - (2 * F + 6)'(t))) >> (F + 1));
                    step <= 1'b1;
                    state <= step ? EMIT : NR_SQ;
                end
                EMIT: if (out_ready) begin
                    idx <= idx + 1'b1;
                    if (idx == LD'(D - 1)) begin
                        idx <= '0;
                        state <= LOAD;
                        s1 <= '0;
                        s2 <= '0;
                    end
                end
                default: state <= LOAD;
            endcase
        end
    end

    // ---- output element idx: z * r * g + b, one rounding, saturation ------------------------------
    logic signed [Z_W-1:0] z;
    logic signed [T_W-1:0] prod, bias, half, total, q;
    logic [7:0] sh;                                        // F + P_F - OUT_F + k, k = MAX_S - s

    assign z = Z_W'(D) * Z_W'(xs[idx]) - Z_W'(s1);
    assign sh = 8'(F + P_F - OUT_F + MAX_S) - 8'(s);
    assign prod = T_W'(z) * $signed(T_W'({1'b0, r})) * T_W'(gs[idx]);
    assign bias = T_W'(bs[idx]) <<< (8'(F + MAX_S) - 8'(s));
    assign half = BUG ? '0 : T_W'(1) <<< (sh - 1'b1);
    assign total = prod + bias + half;
    assign q = total >>> sh;
    assign out_y = (q > MAX) ? MAX[OUT_W-1:0] : (q < MIN) ? MIN[OUT_W-1:0] : q[OUT_W-1:0];
    assign out_valid = (state == EMIT);
    assign out_last = (state == EMIT) && (idx == LD'(D - 1));
endmodule

`default_nettype wire

// SPDX-License-Identifier: Apache-2.0
// Language: Verilog 2005

`resetall
`timescale 1ns / 1ps
`default_nettype none

/*
 * layer_acc: the accumulator of layer_top's MAC stages, with a width and an overflow policy
 * chosen per dot product (per stage) at run time.
 *
 * Numeric contract (model: refmodel.numerics.units.mac.dot_acc_int with the stage's MacParams
 * ACC_W = w, ACC_SAT): the accumulator of a dot product starts at s_bias (already aligned to
 * the accumulator LSB, in range) and adds one exact beat sum s_beat per transfer, in order:
 *   sat = 0: acc = wrap_w(acc + beat)           (two's complement, mod 2^w)
 *   sat = 1: acc = clamp(acc + beat, -hi-1, hi)  (at every beat; one product per beat gives the
 *                                                 model's per-product saturation)
 * with hi = 2^(w-1) - 1 given on the `hi` port (w <= ACC_W). Wrapping the exact sum at every
 * beat or once at the end gives the same result, so the beat grouping never matters for sat = 0.
 * m_acc is the final accumulator, sign-extended to ACC_W bits.
 * Handshake: valid/ready on both sides; s_last marks the last beat of a dot product (one beat is
 * allowed). m_valid rises one clock after the last beat is taken and holds until m_ready;
 * s_ready = !m_valid | m_ready. `hi` and `sat` are sampled with every beat and must stay
 * constant through a dot product.
 * Reset: synchronous, active high; clears m_valid and drops a partly accumulated dot product.
 */
module layer_acc #(
    // beat sum width in bits (signed), 2 .. 62
    parameter integer BEAT_W = 33,
    // widest accumulator in bits (signed), 2 .. 62
    parameter integer ACC_W = 40
) (
    input  wire              clk,
    input  wire              rst,

    input  wire [BEAT_W-1:0] s_beat,    // exact sum of the beat's products
    input  wire [ACC_W-1:0]  s_bias,    // start value, taken with the first beat of a dot product
    input  wire              s_last,
    input  wire              s_valid,
    output wire              s_ready,

    input  wire [ACC_W-1:0]  hi,        // 2^(w-1) - 1: the accumulator's largest value
    input  wire              sat,       // 1 saturate, 0 wrap

    output wire [ACC_W-1:0]  m_acc,
    output wire              m_valid,
    input  wire              m_ready
);

    localparam integer SUM_W = ((ACC_W > BEAT_W) ? ACC_W : BEAT_W) + 1;   // exact sum width

    initial begin
        if (BEAT_W < 2 || BEAT_W > 62 || ACC_W < 2 || ACC_W > 62) begin
            $error("%m: illegal parameters BEAT_W=%0d ACC_W=%0d", BEAT_W, ACC_W);
            $finish;
        end
    end

    reg  [ACC_W-1:0] acc_reg;        // running sum (not reset: first_reg masks it)
    reg              first_reg;      // the next beat starts a dot product
    reg  [ACC_W-1:0] m_acc_reg;
    reg              m_valid_reg;

    // the whole step in one combinational block: an event-driven simulator evaluates it once per
    // input change (a net per operation would be evaluated once per operand update)
    reg  signed [SUM_W-1:0] base_x;     // accumulator (or bias) and beat, sign-extended
    reg  signed [SUM_W-1:0] beat_x;
    reg  signed [SUM_W-1:0] sum;        // base + beat, exact
    reg  signed [SUM_W-1:0] hi_x;       // hi, lo and the w-bit mask at SUM_W bits
    reg  signed [SUM_W-1:0] lo_x;
    reg  [SUM_W-1:0]        wmask;
    reg  [SUM_W-1:0]        nxt;
    reg  [ACC_W-1:0]        acc_next;   // fits w <= ACC_W bits
    always @* begin
        base_x = $signed({first_reg ? s_bias : acc_reg, {(SUM_W - ACC_W){1'b0}}}) >>> (SUM_W - ACC_W);
        beat_x = $signed({s_beat, {(SUM_W - BEAT_W){1'b0}}}) >>> (SUM_W - BEAT_W);
        sum    = base_x + beat_x;
        hi_x  = $signed({{(SUM_W - ACC_W){1'b0}}, hi});
        lo_x  = ~hi_x;                                            // -hi - 1
        wmask = {hi_x[SUM_W-2:0], 1'b1};                          // the low w bits
        if (sat) begin
            nxt = (sum > hi_x) ? hi_x : (sum < lo_x) ? lo_x : sum;
        end else if (|(sum & wmask & ~hi_x)) begin                // bit w-1 set: negative
            nxt = sum | ~wmask;
        end else begin
            nxt = sum & wmask;
        end
        acc_next = nxt[ACC_W-1:0];
    end
    // the bits above ACC_W repeat its sign bit after the wrap or the clamp
    wire unused_nxt = &{1'b0, nxt[SUM_W-1:ACC_W]};

    assign s_ready = !m_valid_reg || m_ready;
    wire fire = s_valid && s_ready;

    always @(posedge clk) begin
        if (fire) begin
            acc_reg   <= acc_next;
            first_reg <= s_last;
            if (s_last) begin
                m_acc_reg <= acc_next;
            end
        end
        if (fire && s_last) begin
            m_valid_reg <= 1'b1;
        end else if (m_ready) begin
            m_valid_reg <= 1'b0;
        end
        if (rst) begin
            m_valid_reg <= 1'b0;
            first_reg   <= 1'b1;
            m_acc_reg   <= {ACC_W{1'b0}};
        end
    end

    assign m_acc   = m_acc_reg;
    assign m_valid = m_valid_reg;

endmodule

`resetall

"""Integer models of the hardware units in ``rtl/``: each function is the bit-exact contract its
RTL module implements (see each module's docstring for formats, rounding, widths and latency).

==============  ====================================  ===========================================
module          model                                  RTL
==============  ====================================  ===========================================
requant         requant (multiply, rounding shift,     rtl/requant.v
                saturate)
mac             dot_int / matmul_int (wide            rtl/mac_dot.v
                accumulator, bias, requant)
fp8mac          dot_fp8 / matmul_fp8 (exact Kulisch   rtl/fp8_mac.v
                accumulator, one RNE to fp32)
reciprocal      divide / reciprocal (exact serial     rtl/reciprocal.v
                divider)
rsqrt           rsqrt, isqrt (exact digit recurrence)  rtl/rsqrt.v
exp2            exp_neg (base-2 exp from a LUT)        (inside rtl/softmax_row.v)
softmax         softmax (max, exp2 LUT, sum,           rtl/softmax_row.v
                reciprocal, multiply)
norm            layernorm_int / rmsnorm_int (SLaNC     rtl/layernorm.v
                shift, exact mean/variance, rsqrt)
activation      act_table / act_lookup (GELU, SiLU)    rtl/act_table.v
==============  ====================================  ===========================================
"""

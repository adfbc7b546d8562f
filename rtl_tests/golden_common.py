"""Unit-specific views of a golden set for the project's golden-set benches
(``rtl_tests/<unit>_golden_tests.py``): which dot products of a stage ``mac_dot`` or ``fp8_mac``
computes and in what order, the unit parameters recorded in a manifest as refmodel parameter
objects, the attention mask, and the coverage the random benches owe the golden ones.

The golden set itself (codes, values, stages, tolerance tiers) is :class:`refmodel.cocotb.GoldenSet`;
checking is :class:`refmodel.cocotb.Scoreboard`. This module does not import cocotb, so the
pytest runners import it too. Environment (set by the pytest runners): ``RM_GOLDEN_SET`` the
set directory, ``RM_GOLDEN_STAGES`` a comma-separated list of stage tensors a build checks (units
whose parameters differ per stage get one build per parameter set).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from refmodel.cocotb import GoldenSet, golden_sets_dir

GOLDEN_ROOT: Path = golden_sets_dir()
ROUNDING_OF_CODE = {0: "floor", 1: "half_up", 2: "rne"}


def collect(fn: Callable[[], dict]) -> dict:
    """``fn()`` for a runner's collection-time parametrisation; on any error one entry
    ``"unavailable"`` holding the error text (a ``str``), so a missing or broken golden set fails
    the golden tests only, not the collection of the other benches in the file."""
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 -- reported by the test that uses it
        return {"unavailable": f"golden set unusable: {type(e).__name__}: {e}"}


def stages_from_env(default: Sequence[str]) -> list[str]:
    s = os.environ.get("RM_GOLDEN_STAGES", "")
    return [x for x in s.split(",") if x] or list(default)


def heads_to_flat(codes: np.ndarray) -> np.ndarray:
    """``[heads, seq, head_dim]`` (the golden layout of q/k/v/scores) -> ``[seq, heads*head_dim]``
    (the matmul output layout they were split from)."""
    h, s, d = codes.shape
    return codes.transpose(1, 0, 2).reshape(s, h * d)


# ---- mac_dot stages --------------------------------------------------------------------------------

MAC_HDL = ("A_W", "W_W", "ACC_W", "OUT_W", "SHIFT", "ROUND_MODE", "ACC_SAT", "LANES", "B_W", "BIAS_LSH")


def mac_params(h: dict):
    """:class:`MacParams` of a manifest ``units.<stage>.mac`` entry (RTL parameter names)."""
    from refmodel.numerics.units.mac import MacParams

    return MacParams(a_w=h["A_W"], w_w=h["W_W"], acc_w=h["ACC_W"], out_w=h["OUT_W"], shift=h["SHIFT"],
                     rounding=ROUNDING_OF_CODE[h["ROUND_MODE"]], acc_overflow="saturate" if h["ACC_SAT"] else "wrap",
                     lanes=h["LANES"], b_w=h["B_W"], bias_lsh=h["BIAS_LSH"])


class MacStage:
    """The dot products of one golden stage computed by ``mac_dot``, in the row-major order of
    the ``[seq, N]`` matmul output: rows of ``a`` and ``w`` (``[n, K]``), ``bias`` ``[n]``, the
    golden codes ``expected`` ``[n]`` and the model accumulators ``acc`` ``[n]``
    (:func:`refmodel.numerics.units.mac.matmul_acc_int`, the contract of ``m_acc``).

    linear ``y = x W^T + b`` (inputs ``x [seq, K]``, ``W [N, K]``, ``b [N]``); mix (attn)
    ``o[h] = probs[h] @ v[h]`` concatenated over heads to ``[seq, heads*hd]``. Golden tensors in
    the ``[heads, seq, hd]`` layout (q, k, v) are the split of ``[seq, heads*hd]``."""

    def __init__(self, gs: GoldenSet, name: str, max_beats: int = 0):
        from refmodel.numerics.units.mac import matmul_acc_int

        u = gs.units[name]
        self.name = name
        self.kind = u.get("kind")
        if "mac" not in u:
            raise AssertionError(f"{gs.name}: units.{name} has no mac parameters")
        self.hdl = {k: int(u["mac"][k]) for k in MAC_HDL}
        self.p = p = mac_params(u["mac"])
        if p.lanes != 1:
            raise AssertionError(f"{name}: LANES={p.lanes}; the golden bench packs one product per beat")
        if "bias_requant" in u:
            raise AssertionError(f"{name}: offline bias requantisation ({u['bias_requant']}) is not handled here")
        self.inputs = tuple(u["inputs"])
        g = gs.codes(name)
        self.golden_shape = g.shape
        if self.kind == "linear":
            x, w = gs.codes(self.inputs[0]), gs.codes(self.inputs[1])
            b = gs.codes(self.inputs[2]) if len(self.inputs) > 2 else np.zeros(w.shape[0], np.int64)
            s, n = x.shape[0], w.shape[0]
            self._operands = (x, w, b)
            self.a = np.repeat(x, n, axis=0)
            self.w = np.tile(w, (s, 1))
            self.bias = np.tile(b, s)
            self.acc = matmul_acc_int(x, w.T, p, b).reshape(-1)
            self.out2d = (s, n)
        elif self.kind == "mix":
            pr, v = gs.codes(self.inputs[0]), gs.codes(self.inputs[1])  # [h, s, t], [h, t, hd]
            h, s, t = pr.shape
            hd = v.shape[-1]
            self._operands = (pr, v, None)
            self.a = np.broadcast_to(pr.transpose(1, 0, 2)[:, :, None, :], (s, h, hd, t)).reshape(-1, t)
            self.w = np.broadcast_to(v.transpose(0, 2, 1)[None], (s, h, hd, t)).reshape(-1, t)
            self.bias = np.zeros(self.a.shape[0], np.int64)
            self.acc = heads_to_flat(np.stack([matmul_acc_int(pr[i], v[i], p) for i in range(h)])).reshape(-1)
            self.out2d = (s, h * hd)
        else:
            raise AssertionError(f"{name}: unit kind {self.kind!r} is not a mac_dot stage")
        self.expected = (heads_to_flat(g) if g.ndim == 3 else g).reshape(-1)
        if self.expected.size != self.a.shape[0]:
            raise AssertionError(f"{name}: {self.a.shape[0]} dot products for {self.expected.size} golden codes")
        self.total = int(self.expected.size)
        self.total_beats = int(self.a.size)
        # sequence rows to run: all, or (max_beats > 0) evenly spread rows within max_beats beats
        s_rows, n_out = self.out2d
        self.rows = select_rows(s_rows, n_out * self.a.shape[1], max_beats)
        sel = (self.rows[:, None] * n_out + np.arange(n_out)[None, :]).reshape(-1)
        self.sel = sel
        self.a, self.w, self.bias = self.a[sel], self.w[sel], self.bias[sel]
        self.acc, self.expected = self.acc[sel], self.expected[sel]

    @property
    def n_beats(self) -> int:
        return int(self.a.size)

    @property
    def coverage(self) -> str:
        """"all 1024 outputs" or "256 of 4096 outputs (sequence rows [0, 5, 10, 15])"."""
        if len(self.expected) == self.total:
            return f"all {self.total} outputs ({self.total_beats} beats)"
        return (f"{len(self.expected)} of {self.total} outputs, sequence rows {self.rows.tolist()} "
                f"({self.n_beats} of {self.total_beats} beats; all rows with --run-slow)")

    def to_golden_layout(self, got) -> tuple[np.ndarray, np.ndarray]:
        """Outputs of the selected rows -> (codes, computed-mask), both in the golden shape."""
        full = np.zeros(self.total, dtype=np.int64)
        mask = np.zeros(self.total, dtype=bool)
        full[self.sel] = np.asarray(got, dtype=np.int64)
        mask[self.sel] = True
        out = []
        for f in (full, mask):
            f = f.reshape(self.out2d)
            if len(self.golden_shape) == 3:
                h, s, d = self.golden_shape
                f = f.reshape(s, h, d).transpose(1, 0, 2)
            out.append(f.reshape(self.golden_shape))
        return out[0], out[1]

    def beats(self) -> list[tuple[int, int, int, int]]:
        """``(s_a, s_w, s_bias, s_last)`` per beat (unsigned field values), one product per beat."""
        p = self.p
        n, k = self.a.shape
        a = (self.a & ((1 << p.a_w) - 1)).tolist()
        w = (self.w & ((1 << p.w_w) - 1)).tolist()
        b = (self.bias & ((1 << p.b_w) - 1)).tolist()
        lasts = [0] * (k - 1) + [1]
        out: list[tuple[int, int, int, int]] = []
        for i in range(n):
            out.extend(zip(a[i], w[i], [b[i]] * k, lasts, strict=True))
        return out

    def describe_at(self, ix: tuple[int, ...]) -> str:
        """The operands of the dot product behind golden element ``ix``."""
        if self.kind == "linear":
            x, w, b = self._operands
            s, n = (ix[1], ix[0] * self.golden_shape[2] + ix[2]) if len(ix) == 3 else ix
            a, wr, bias = x[s], w[n], int(b[n])
        else:
            pr, v, _ = self._operands
            hh, s, d = ix if len(ix) == 3 else (ix[1] // v.shape[-1], ix[0], ix[1] % v.shape[-1])
            a, wr, bias = pr[hh, s], v[hh, :, d], 0
        return (f"{'/'.join(self.inputs)}: a[:6]={a[:6].tolist()} w[:6]={wr[:6].tolist()} bias={bias} "
                f"K={len(a)}")


def select_rows(n_rows: int, beats_per_row: int, max_beats: int) -> np.ndarray:
    """All ``n_rows`` sequence rows, or (``max_beats > 0`` and more beats than that) the largest
    evenly spread subset (first and last row included) that fits in ``max_beats`` beats."""
    k = n_rows if max_beats <= 0 else max(1, min(n_rows, max_beats // max(beats_per_row, 1)))
    if k >= n_rows:
        return np.arange(n_rows)
    return np.unique(np.round(np.linspace(0, n_rows - 1, k)).astype(np.int64))


def mac_groups(gs: GoldenSet) -> dict[str, dict[str, int]]:
    """Stages of a set that run on mac_dot, grouped by identical MAC parameters (one Icarus build
    each): ``{"k,q,v": {RTL parameters}, ...}``."""
    groups: dict[tuple, list[str]] = {}
    for name, u in gs.units.items():
        if u.get("kind") in ("linear", "mix") and "mac" in u:
            groups.setdefault(tuple(sorted((k, int(v)) for k, v in u["mac"].items() if k in MAC_HDL)), []).append(name)
    return {",".join(sorted(names)): dict(key) for key, names in groups.items()}


# ---- fp8_mac stages (float plans) ---------------------------------------------------------------------

F32_MIN_NORMAL = 2.0 ** -126


def f32(codes) -> np.ndarray:
    """fp32 codes -> numpy float32 (bit-exact view)."""
    return np.asarray(codes, dtype=np.int64).astype(np.uint32).view(np.float32)


def f32_bits(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.int64)


class Fp8Stage:
    """Dot products of one fp8 golden stage whose golden codes follow EXACTLY from fp32 results of
    ``fp8_mac`` (exact products, exact sum, one RNE to fp32):

    * ``scores``: ``scores = fp32(fp32(q.k) * scale)`` with an exact power-of-two scale, causal
      entries only (masked ones are 0 and not computed); ``golden = post(raw)``;
    * fp32 ``linear`` stages (proj, up, down): ``y = fp32(fp32(x.w) + b)`` (the plan's bias add,
      one fp32 rounding; numpy float32 addition is that rounding).

    ``post(raw_codes)`` maps the unit's fp32 codes to golden codes; ``raw_expected`` are the
    unit's exact expected codes where the map can be inverted exactly (scores: ``|golden| >= 2^-125``
    and ``golden / scale`` a finite normal fp32), else -1 (only ``post`` compared there)."""

    def __init__(self, gs: GoldenSet, name: str, max_beats: int = 0):
        u = gs.units[name]
        self.name = name
        self.kind = u.get("kind")
        self.inputs = tuple(u["inputs"])
        g = gs.codes(name)
        self.total = int(g.size)
        self.golden_shape = g.shape
        if gs.entry(name)["format"] != "fp32":
            raise AssertionError(f"{name}: golden format {gs.entry(name)['format']} is not fp32: not derivable exactly")
        if u.get("acc") != "exact":
            raise AssertionError(f"{name}: accumulation {u.get('acc')!r} is not exact")
        if self.kind == "scores":
            q, k = gs.codes(self.inputs[0]), gs.codes(self.inputs[1])  # [h, s, hd], [h, t, hd]
            scale = float(u["scale"])
            if not (u.get("scale_exact") and np.frexp(scale)[0] == 0.5):
                raise AssertionError(f"{name}: scale {scale} is not an exact power of two")
            h, s, _ = q.shape
            t = k.shape[1]
            allowed = allowed_mask(gs, s, t)
            hh, ss, tt = np.nonzero(np.broadcast_to(allowed, (h, s, t)))
            self.index = (hh, ss, tt)
            self.where = np.broadcast_to(allowed, (h, s, t))
            self.a, self.b = q[hh, ss], k[hh, tt]
            gv = g[hh, ss, tt]
            self.golden = gv
            self.scale = np.float32(scale)
            gf = f32(gv)
            with np.errstate(over="ignore", under="ignore"):
                rf = gf / self.scale  # exact where both gf and rf are normal (power-of-two scale)
            # invertible: |golden| >= 2^-125 (a product rounded from the subnormal range is at most
            # 2^-126), and raw = golden / scale normal and finite
            inv = np.isfinite(rf) & (np.abs(gf) >= 2 * F32_MIN_NORMAL) & (np.abs(rf) >= F32_MIN_NORMAL)
            self.raw_expected = np.where(inv, f32_bits(rf), -1)
            self.post = lambda raw: f32_bits(f32(raw) * self.scale)  # noqa: E731
            self.what = f"fp32(fp32({self.inputs[0]}.{self.inputs[1]}) * {scale})"
        elif self.kind == "linear":
            x, w = gs.codes(self.inputs[0]), gs.codes(self.inputs[1])
            bias = gs.codes(self.inputs[2]) if len(self.inputs) > 2 else None
            if bias is not None and gs.entry(self.inputs[2])["format"] != "fp32":
                raise AssertionError(f"{name}: bias format is not fp32")
            s, n = x.shape[0], w.shape[0]
            self.rows = select_rows(s, n * x.shape[1], max_beats)
            r = np.repeat(self.rows, n)
            c = np.tile(np.arange(n), len(self.rows))
            self.index = (r, c)
            self.where = np.zeros(g.shape, dtype=bool)
            self.where[r, c] = True
            self.a, self.b = x[r], w[c]
            self.golden = g[r, c]
            bt = bias[c] if bias is not None else np.zeros(len(r), np.int64)
            self.post = lambda raw: f32_bits(f32(raw) + f32(bt))  # noqa: E731
            self.raw_expected = np.full(len(r), -1, dtype=np.int64)
            self.what = f"fp32(fp32({self.inputs[0]}.{self.inputs[1]}^T) + {self.inputs[2] if bias is not None else 0})"
        else:
            raise AssertionError(f"{name}: kind {self.kind!r} is not an fp8_mac stage")
        for nm in self.inputs[:2]:
            if gs.entry(nm)["format"] not in ("e4m3fn", "e5m2"):
                raise AssertionError(f"{name}: input {nm} is {gs.entry(nm)['format']}, not fp8")
        self.format = gs.entry(self.inputs[0])["format"]

    @property
    def n_beats(self) -> int:
        return int(self.a.size)

    @property
    def coverage(self) -> str:
        n = len(self.golden)
        if self.kind == "scores":
            return f"all {n} causal entries of {self.total}"
        if n == self.total:
            return f"all {n} outputs"
        return f"{n} of {self.total} outputs, sequence rows {self.rows.tolist()} (all rows with --run-slow)"

    def to_golden_layout(self, codes: np.ndarray) -> np.ndarray:
        """Codes in compute order -> the golden tensor's shape (uncomputed entries 0)."""
        out = np.zeros(self.golden_shape, dtype=np.int64)
        out[self.index] = codes
        return out

    def describe(self, i: int) -> str:
        at = f"{self.name}{[int(x[i]) for x in self.index]}"
        return (f"{at} = {self.what}: a[:6]={[hex(int(c)) for c in self.a[i, :6]]} "
                f"b[:6]={[hex(int(c)) for c in self.b[i, :6]]} K={self.a.shape[1]}")

    def describe_at(self, ix: tuple[int, ...]) -> str:
        """The operands behind golden element ``ix`` (a computed element)."""
        hit = np.flatnonzero(np.all(np.stack([x == v for x, v in zip(self.index, ix, strict=True)]), axis=0))
        return self.describe(int(hit[0])) if hit.size else f"{self.name}{list(ix)} (not computed)"


FP8_STAGES = ("scores", "proj", "up", "down")


def fp8_beats(st: Fp8Stage) -> list[tuple[int, int, int]]:
    """``(s_a, s_b, s_last)`` per beat of an fp8 stage, one product per beat."""
    n, k = st.a.shape
    last = np.zeros((n, k), dtype=np.int64)
    last[:, -1] = 1
    return list(zip(st.a.reshape(-1).tolist(), st.b.reshape(-1).tolist(), last.reshape(-1).tolist(), strict=True))


# ---- parameters of the other units, from the manifest ------------------------------------------------


def allowed_mask(gs: GoldenSet, s: int, t: int) -> np.ndarray:
    """``[s, t]`` boolean: key ``j`` visible to query ``i`` (causal sets: ``j <= i``; the golden
    sets have no padding mask)."""
    if gs.manifest["config"].get("causal"):
        return np.tril(np.ones((s, t), dtype=bool))
    return np.ones((s, t), dtype=bool)


def softmax_params(h: dict):
    """:class:`SoftmaxParams` of a manifest ``units.probs.softmax`` entry; its ``to_hdl()`` (without
    the LUT path) must reproduce the entry (checked)."""
    from refmodel.numerics.units.softmax import SoftmaxParams

    p = SoftmaxParams(in_w=h["IN_W"], in_f=h["IN_F"], n_max=h["N_MAX"], lut_bits=h["LUT_BITS"], lut_w=h["LUT_W"],
                      guard=h["GUARD"], out_w=h["OUT_W"], out_f=h["OUT_F"], log2e_f=h["LOG2E_F"], k=h["K"])
    if p.to_hdl() != {k: int(v) for k, v in h.items()}:
        raise AssertionError(f"SoftmaxParams {p.to_hdl()} do not reproduce the manifest entry {h}")
    return p


def norm_params(gs: GoldenSet, stage: str):
    """:class:`NormParams` of ``units.<stage>.norm_params`` (input format from the stage's input
    tensor); its ``to_hdl()`` must reproduce the entry (checked)."""
    from refmodel.numerics.units.norm import NormParams

    u = gs.units[stage]
    h = u["norm_params"]
    p = NormParams(d=h["D"], in_fmt=gs.entry(u["inputs"][0])["format"], shift=h["SHIFT"], rms=bool(h["RMS"]),
                   mean_g=h["MEAN_G"], eps=h["EPS"], eps_g=h["EPS_G"], n_f=h["N_F"], rsq_k=h["RSQ_K"],
                   rsq_w=h["RSQ_W"], sqd_f=h["SQD_F"], gamma_fmt=f"s{h['G_W']}.{h['G_F']}",
                   beta_fmt=f"s{h['B_W']}.{h['B_F']}", out_fmt=f"s{h['OUT_W']}.{h['OUT_F']}",
                   out_rounding="rne" if h["OUT_RNE"] else "half_up")
    if p.to_hdl() != {k: int(v) for k, v in h.items()}:
        raise AssertionError(f"{stage}: NormParams {p.to_hdl()} do not reproduce the manifest entry {h}")
    return p

"""Shared helpers of the golden-set RTL tests (``rtl_tests/<unit>_golden_tests.py``).

A golden set (``golden/<set>/``, written by :mod:`refmodel.golden.generate`) holds every stage
tensor of one quantized layer as codes, plus its float64 reference and, once the bounds module
has run, a per-element tolerance. The golden tests drive each RTL unit with the set's own
tensors, with the unit parameters recorded in the manifest (``units``), and compare:

* the unit's output with the golden codes, bit-exactly (:func:`tb_common.compare`: first
  mismatches with index, inputs, expected and got);
* the decoded output with the float64 reference, elementwise within the manifest tolerance
  (:func:`check_tolerance`); a tensor without a tolerance is reported as such (the bit-exact
  check still runs), never skipped silently and never given an invented tolerance.

Files are read through :mod:`refmodel.golden.manifest` (schema, sha256 and word counts checked).

This module does not import cocotb, so the pytest runners import it too. Environment (set by
the pytest runners): ``RM_GOLDEN_SET`` the set directory (absolute),
``RM_GOLDEN_STAGES`` a comma-separated list of stage tensors a build checks (units whose
parameters differ per stage get one build per parameter set).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from refmodel.golden.manifest import check_files, load_tensor, read_manifest
from refmodel.numerics.fixed import FixedFormat
from refmodel.numerics.formats import parse_format
from refmodel.numerics.minifloat import FloatFormat
from refmodel.numerics.minifloat import decode as float_decode
from refmodel.resources import golden_sets_dir

__all__ = [
    "GOLDEN_ROOT",
    "GoldenSet",
    "golden_set",
    "collect",
    "stages_from_env",
    "heads_to_flat",
    "decode_codes",
    "check_tolerance",
    "drive_full_rate",
    "log_golden",
    "MacStage",
    "mac_params",
    "mac_groups",
    "select_rows",
    "Fp8Stage",
    "fp8_beats",
    "allowed_mask",
    "softmax_params",
    "norm_params",
    "quoted",
]

GOLDEN_ROOT = golden_sets_dir()
ROUNDING_OF_CODE = {0: "floor", 1: "half_up", 2: "rne"}


class GoldenSet:
    """One golden set: the checked manifest and its tensors as codes in their own formats.

    ``codes(name)`` returns int64 codes whose signedness follows the tensor's *format spec* (a
    ``u16.15`` tensor gives 0..65535 even if its manifest entry says ``signed``: the word in the
    file is what the RTL sees; the discrepancy is recorded in ``notes``)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        check_files(self.path, self.manifest)
        self.units: dict[str, Any] = self.manifest.get("units", {})
        self.notes: list[str] = []
        self._cache: dict[str, dict[str, Any]] = {}

    @property
    def name(self) -> str:
        return self.path.name

    def entry(self, name: str) -> dict[str, Any]:
        return self.manifest["tensors"][name]

    def file(self, name: str) -> Path:
        """Absolute path of the tensor's ``.hex`` file (e.g. a table the RTL loads with $readmemh)."""
        return (self.path / self.entry(name)["file"]).resolve()

    def fmt(self, name: str):
        return parse_format(self.entry(name)["format"])

    def tensor(self, name: str) -> dict[str, Any]:
        """``load_tensor`` result with ``codes`` reinterpreted per the format spec."""
        if name not in self._cache:
            t = load_tensor(self.path, name, self.manifest)
            e = t["entry"]
            f = parse_format(e["format"])
            w = int(e["word_width"])
            codes = np.asarray(t["codes"], dtype=np.int64)
            spec_signed = bool(f.signed) if isinstance(f, FixedFormat) else False
            if spec_signed != bool(e["signed"]):
                raw = codes & np.int64((1 << w) - 1)
                codes = (raw ^ (1 << (w - 1))) - (1 << (w - 1)) if spec_signed else raw
                self.notes.append(
                    f"{self.name}/{name}: manifest says signed={e['signed']} but the format is {e['format']}; "
                    f"codes read as the format says (generator issue)")
            t["codes"] = codes
            t["fmt"] = f
            self._cache[name] = t
        return self._cache[name]

    def codes(self, name: str) -> np.ndarray:
        return self.tensor(name)["codes"]


def golden_set(default: str | None = None) -> GoldenSet:
    """The set named by ``RM_GOLDEN_SET`` (or ``golden/<default>``)."""
    path = os.environ.get("RM_GOLDEN_SET") or str(GOLDEN_ROOT / (default or "tiny_gpt2_hw"))
    return GoldenSet(path)


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


def decode_codes(codes: np.ndarray, fmt) -> np.ndarray:
    """float64 values of fixed-point or minifloat codes."""
    if isinstance(fmt, FixedFormat):
        return np.ldexp(np.asarray(codes, dtype=np.float64), -fmt.frac)
    if isinstance(fmt, FloatFormat):
        return float_decode(np.asarray(codes, dtype=np.int64), fmt)
    raise ValueError(f"decode_codes: unsupported format {fmt}")


def check_tolerance(log, gs: GoldenSet, name: str, got_codes: np.ndarray, *, where: np.ndarray | None = None,
                    describe: Callable[[tuple[int, ...]], str] | None = None) -> str:
    """``|decode(got) - reference| <= tolerance`` elementwise for golden tensor ``name``
    (``got_codes`` in the tensor's own layout and format; ``where``: boolean mask of the elements
    the unit computed). AssertionError naming the first element over its tolerance. Without a
    tolerance in the set, logs and prints ``NO TOLERANCE`` and returns (bit-exact only).
    Returns the one-line summary it logged."""
    t = gs.tensor(name)
    e = t["entry"]
    mask = np.ones(np.shape(got_codes), dtype=bool) if where is None else np.asarray(where, dtype=bool)
    if "tolerance" not in t or "reference" not in t:
        have = "no reference" if "reference" not in t else f"compare={e['compare']!r}"
        msg = (f"NO TOLERANCE {gs.name}/{name}: the set has {have} for this tensor (no .tol.hex yet); "
               f"bit-exact check only")
        if e.get("no_guarantee"):
            msg += f"; no_guarantee: {e['no_guarantee']}"
        log.warning(msg)
        print(msg, flush=True)
        return msg
    ref = t["reference"]
    tol = t["tolerance"]
    got = decode_codes(got_codes, t["fmt"])
    err = np.abs(got - ref)
    ok = (err <= tol) | ~mask
    if not ok.all():
        bad = np.argwhere(~ok)
        i = tuple(int(v) for v in bad[0])
        inp = f" inputs {describe(i)}" if describe else ""
        raise AssertionError(
            f"{gs.name}/{name}: {len(bad)} of {int(mask.sum())} decoded outputs outside the manifest tolerance; "
            f"first at {i}:{inp} got {float(got[i])!r} (code {int(np.asarray(got_codes)[i])}), "
            f"reference {float(ref[i])!r}, "
            f"|err| {err[i]:.6g} > tol {tol[i]:.6g}")
    m = mask & np.isfinite(err)
    worst = float((err[m] / np.where(tol[m] > 0, tol[m], np.inf)).max()) if m.any() else 0.0
    msg = (f"TOLERANCE {gs.name}/{name}: {int(mask.sum())} decoded outputs within the manifest tolerance "
           f"(max |err| {float(err[m].max()) if m.any() else 0.0:.6g}, max tol {float(tol[mask].max()):.6g}, "
           f"worst err/tol {worst:.3f})")
    if e.get("no_guarantee"):
        msg += f"; no_guarantee: {e['no_guarantee']}"
    log.info(msg)
    print(msg, flush=True)
    return msg


async def drive_full_rate(dut, beats: Sequence[Sequence[int]], names: Sequence[str], prefix: str = "s",
                          clk: str = "clk") -> tuple[int, float]:
    """Drive ``beats`` (tuples of unsigned field values, in the order of ``names``: ``<prefix>_<name>``)
    one per clock with ``<prefix>_valid`` high, holding a beat while ``<prefix>_ready`` is low
    (sampled at the edge, as :class:`tb_common.StreamSource` does). Leaner than StreamSource
    (no queue, no idle generator, only changed fields written) for long golden streams.
    Returns ``(cycles, seconds)``; ``valid`` is low again when it returns."""
    from cocotb.triggers import RisingEdge

    handles = [getattr(dut, f"{prefix}_{n}") for n in names]
    valid = getattr(dut, f"{prefix}_valid")
    ready = getattr(dut, f"{prefix}_ready")
    edge = RisingEdge(getattr(dut, clk))
    prev: list[int | None] = [None] * len(handles)
    t0 = time.perf_counter()
    cycles = 0
    valid.value = 1
    for b in beats:
        for j, h in enumerate(handles):
            v = b[j]
            if v != prev[j]:
                h.value = v
                prev[j] = v
        while True:
            await edge
            cycles += 1
            r = ready.value
            if r.is_resolvable and int(r) == 1:
                break
    valid.value = 0
    return cycles, time.perf_counter() - t0


def log_golden(dut, gs: GoldenSet, unit: str, what: str, n: int, seconds: float) -> None:
    """One summary line per checked stage (and any manifest notes)."""
    for note in gs.notes:
        dut._log.warning("NOTE %s", note)
        print(f"NOTE {note}", flush=True)
    gs.notes.clear()
    line = f"GOLDEN {unit} {gs.name}/{what}: {n} vectors bit-exact in {seconds:.2f} s"
    dut._log.info(line)
    print(line, flush=True)


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
            self.a = np.repeat(x, n, axis=0)
            self.w = np.tile(w, (s, 1))
            self.bias = np.tile(b, s)
            self.acc = matmul_acc_int(x, w.T, p, b).reshape(-1)
            self.out2d = (s, n)
        elif self.kind == "mix":
            pr, v = gs.codes(self.inputs[0]), gs.codes(self.inputs[1])  # [h, s, t], [h, t, hd]
            h, s, t = pr.shape
            hd = v.shape[-1]
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
            out.extend(zip(a[i], w[i], [b[i]] * k, lasts))
        return out

    def describe(self, i: int) -> str:
        s, n = divmod(int(self.sel[i]), self.out2d[1])
        return (f"{self.name}[{s},{n}] = {'/'.join(self.inputs)}: a[:6]={self.a[i, :6].tolist()} "
                f"w[:6]={self.w[i, :6].tolist()} bias={int(self.bias[i])} K={self.a.shape[1]}")


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


FP8_STAGES = ("scores", "proj", "up", "down")


def fp8_beats(st: Fp8Stage) -> list[tuple[int, int, int]]:
    """``(s_a, s_b, s_last)`` per beat of an fp8 stage, one product per beat."""
    n, k = st.a.shape
    last = np.zeros((n, k), dtype=np.int64)
    last[:, -1] = 1
    return list(zip(st.a.reshape(-1).tolist(), st.b.reshape(-1).tolist(), last.reshape(-1).tolist()))


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


def quoted(path: Path) -> str:
    """A string parameter for iverilog ``-P``: the absolute path in double quotes."""
    return '"' + str(Path(path).resolve()) + '"'

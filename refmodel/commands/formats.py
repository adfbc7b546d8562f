"""``refmodel formats``: list formats, or show one format and the encoding of a value."""

from __future__ import annotations

import math
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np
import typer
from rich import box
from rich.console import Console
from rich.table import Table

from refmodel.console import make_console
from refmodel.errors import UserError

if TYPE_CHECKING:
    from refmodel.numerics.fixed import FixedFormat

#: name, kind, bits, max (a float, or exact text), min normal, min subnormal, epsilon
_Row = tuple[str, str, int, float | str, float, float, float]

EXAMPLE_FIXED = ["s8.7", "s8.4", "u8.8", "s16.8", "s16.12", "s32.16"]


def _float_rows() -> Iterator[_Row]:
    from refmodel.numerics.minifloat import PRESETS

    for name, f in PRESETS.items():
        yield name, f"e{f.exp}m{f.man} {f.specials}", f.bits, f.max, f.min_normal, f.min_subnormal, f.epsilon


def _fixed_rows() -> Iterator[_Row]:
    from refmodel.numerics.fixed import FixedFormat

    for spec in EXAMPLE_FIXED:
        f = FixedFormat.parse(spec)
        yield spec, "fixed " + ("signed" if f.signed else "unsigned"), f.width, _fixed_max(f), f.lsb, f.lsb, f.lsb


def _fixed_max(f: FixedFormat) -> str:
    """The largest value, exactly: ``7.9375``, or ``2^7-2^-8`` when six digits would round it."""
    if float(_g(f.max)) == f.max:
        return _g(f.max)
    top = f.width - int(f.signed) - f.frac
    return f"{'1' if top == 0 else f'2^{top}'}-2^{-f.frac}"


def _g(v: float) -> str:
    """A power of two as ``2^k`` (exact and short: ``2^-149``), anything else to six significant
    digits with its exponent (``65504``, ``127.996``, ``3.40282e+38``)."""
    m, e = math.frexp(v)
    return f"2^{e - 1}" if m == 0.5 else f"{v:.6g}"


NUMBER_COLUMNS = ("max", "min normal", "min subnormal", "epsilon")


def list_formats(console: Console) -> None:
    rows = [(r[0], r[1], str(r[2]), *(v if isinstance(v, str) else _g(v) for v in r[3:]))
            for r in list(_float_rows()) + list(_fixed_rows())]
    try:
        from refmodel.numerics.block import BLOCK_PRESETS

        for name, b in BLOCK_PRESETS.items():
            el = b.element
            rows.append((name, f"MX {b.block} x {el}", str(getattr(el, "bits", 8)), "-", "-", "-", "-"))
    except ImportError:
        pass
    # no vertical rules, so that the table fits 80 columns; numbers and specs are never folded or
    # cut (each column is as wide as its longest entry), the kind column wraps at spaces instead
    t = Table(title="refmodel formats (and any s<W>.<F> / u<W>.<F> fixed format)", box=box.SIMPLE_HEAD,
              show_edge=False, collapse_padding=True)
    for i, col in enumerate(("spec", "kind", "bits", *NUMBER_COLUMNS)):
        width = max(len(r[i]) for r in rows)
        if col == "kind":
            t.add_column(col, justify="left", overflow="fold", min_width=10)
        else:
            t.add_column(col, justify="left" if col == "spec" else "right", no_wrap=True,
                         min_width=max(width, len(col) if col in ("spec", "bits") else 0))
    for row in rows:
        t.add_row(*row)
    console.print(t)
    console.print("fixed point: min normal = min subnormal = epsilon = 1 LSB (absolute resolution). "
                  "MX: 32 elements share one e8m0 scale. One format in detail: refmodel formats SPEC")


def _bits(code: int, width: int) -> str:
    from bitstring import Bits

    return Bits(uint=code, length=width).bin


def _parse_value(text: str) -> Decimal:
    """The --show value, exactly as typed (0.1 is one tenth, not the float64 nearest to it)."""
    try:
        v = Decimal(text.strip())
    except InvalidOperation:
        raise UserError(f"--show {text!r} is not a number (examples: 1.3, -0.25, 6e-5, inf)") from None
    if v.is_snan():
        raise UserError(f"--show {text!r} is not a number (examples: 1.3, -0.25, 6e-5, inf)")
    return v


def _error(decoded: float, value: Decimal) -> str:
    """decoded - value, computed exactly, shown to 3 digits."""
    if not value.is_finite() or not np.isfinite(decoded):
        return f"{decoded - float(value):+.3g}"
    return f"{float(Fraction(decoded) - Fraction(value)):+.3g}"


def show_format(console: Console, spec: str, value: Decimal | None, rounding: str, seed: int | None = None) -> None:
    from refmodel.numerics.fixed import FixedFormat, quantize
    from refmodel.numerics.formats import parse_format
    from refmodel.numerics.minifloat import FloatFormat, encode

    try:
        fmt = parse_format(spec)
    except ValueError as e:
        raise UserError(str(e)) from None
    if isinstance(fmt, FixedFormat):
        console.print(
            f"[bold]{fmt}[/]: {'signed' if fmt.signed else 'unsigned'} fixed point, {fmt.width} bits, "
            f"{fmt.frac} fractional; codes {fmt.min_code}..{fmt.max_code}; "
            f"range [{fmt.min:.10g}, {fmt.max:.10g}], LSB 2^{-fmt.frac} = {fmt.lsb:.10g}"
        )
        if value is None:
            return
        q = quantize(np.array([value], dtype=object), fmt, rounding, "saturate", seed=seed)
        code = int(q.codes[0])
        u = code & ((1 << fmt.width) - 1)
        b = _bits(u, fmt.width)
        ib = fmt.width - fmt.frac
        if fmt.signed:
            fields = f"sign {b[0]} | int {b[1:max(ib, 1)] or '-'} | frac {b[max(ib, 1):] or '-'}"
        else:
            fields = f"int {b[:max(ib, 0)] or '-'} | frac {b[max(ib, 0):] or '-'}"
        dec = float(q.to_float()[0])
        console.print(f"value {value} -> code {code} = 0x{u:0{fmt.hex_digits}x} = 0b{b}")
        console.print(f"fields: {fields}")
        console.print(f"decoded {dec!r}, error {_error(dec, value)} ({_how(rounding, seed)}, saturate)")
        return
    if isinstance(fmt, FloatFormat):
        console.print(
            f"[bold]{fmt}[/]: e{fmt.exp}m{fmt.man}, bias {fmt.bias}, specials {fmt.specials}, overflow {fmt.overflow}, "
            f"subnormals {'yes' if fmt.subnormals else 'no'}; max {fmt.max:.10g}, min normal {fmt.min_normal:.10g}, "
            f"min subnormal {fmt.min_subnormal:.10g}, epsilon {fmt.epsilon:.10g}"
        )
        if value is None:
            return
        a = encode(np.array([value], dtype=object), fmt, rounding, seed=seed)
        code = int(a.codes[0])
        b = _bits(code, fmt.bits)
        s = 1 if fmt.signed else 0
        sign = b[:s]
        exp_field = b[s:s + fmt.exp]
        man_field = b[s + fmt.exp:]
        dec = float(a.to_float()[0])
        console.print(f"value {value} -> code 0x{code:0{fmt.hex_digits}x} = 0b{b}")
        console.print(f"fields: sign {sign or '-'} | exponent {exp_field} | mantissa {man_field or '-'}")
        console.print(f"decoded {dec!r}, error {_error(dec, value)} ({_how(rounding, seed)})")
        return
    console.print(f"[bold]{spec}[/]: {fmt}")
    if value is not None:
        raise UserError("--show is for scalar formats; MX block formats quantise whole blocks")


def _how(rounding: str, seed: int | None) -> str:
    return f"{rounding}, seed {seed}" if seed is not None else rounding


def register(app: typer.Typer) -> None:
    @app.command("formats")
    def formats(
        spec: str | None = typer.Argument(None, help="a format spec: s16.12, u8.8, fp16, e4m3fn, e5m2:sat, mxfp8_e4m3..."),
        show: str | None = typer.Option(None, "--show", help="encode this value (taken exactly as typed: 0.1 is "
                                        "one tenth) and print its code and bit fields"),
        rounding: str = typer.Option("rne", "--rounding", help="rounding mode for --show: rne, rtz, floor, ceil, "
                                     "half_up, half_away, stochastic"),
        seed: int | None = typer.Option(None, "--seed", min=0, help="seed of the random bits of --rounding "
                                        "stochastic (required with it)"),
    ) -> None:
        """List the formats with their range and resolution, or show one format (and encode a value).
        Exit codes: 0 ok, 2 usage error."""
        console = make_console()
        from refmodel.numerics.rounding import Rounding

        try:
            mode = Rounding.parse(rounding)
        except ValueError as e:
            raise UserError(str(e)) from None
        if mode is Rounding.STOCHASTIC and seed is None and show is not None:
            raise UserError("--rounding stochastic needs --seed N (the seed of the random bits added below the LSB)")
        if seed is not None and mode is not Rounding.STOCHASTIC:
            raise UserError(f"--seed is used only by --rounding stochastic (got --rounding {rounding})")
        if spec is None:
            if show is not None:
                raise UserError("--show needs a format spec, e.g. refmodel formats s16.12 --show 1.3")
            list_formats(console)
        else:
            show_format(console, spec, None if show is None else _parse_value(show), mode.value, seed)

"""``refmodel formats``: list formats, or show one format and the encoding of a value."""

from __future__ import annotations

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from refmodel.console import make_console
from refmodel.errors import UserError

EXAMPLE_FIXED = ["s8.7", "s8.4", "u8.8", "s16.8", "s16.12", "s32.16"]


def _float_rows():
    from refmodel.numerics.minifloat import PRESETS

    for name, f in PRESETS.items():
        yield name, f"e{f.exp}m{f.man} {f.specials}", f.bits, f.max, f.min_normal, f.min_subnormal, f.epsilon


def _fixed_rows():
    from refmodel.numerics.fixed import FixedFormat

    for spec in EXAMPLE_FIXED:
        f = FixedFormat.parse(spec)
        yield spec, "fixed " + ("signed" if f.signed else "unsig."), f.width, f.max, f.lsb, f.lsb, f.lsb


def _g(v: float) -> str:
    return f"{v:.6g}"


def list_formats(console: Console) -> None:
    t = Table(title="refmodel formats (any s<W>.<F> / u<W>.<F> fixed format is accepted too)")
    for col in ("spec", "kind", "bits", "max", "min normal", "min subnormal", "epsilon"):
        t.add_column(col, justify="right" if col not in ("spec", "kind") else "left")
    for row in list(_float_rows()) + list(_fixed_rows()):
        t.add_row(row[0], row[1], str(row[2]), *(_g(v) for v in row[3:]))
    try:
        from refmodel.numerics.block import BLOCK_PRESETS

        for name, b in BLOCK_PRESETS.items():
            el = b.element
            t.add_row(name, f"MX block of {b.block}, scale e8m0", str(getattr(el, "bits", 8)), "-", "-", "-", "-")
    except ImportError:
        pass
    console.print(t)
    console.print("fixed point: min normal = min subnormal = epsilon = 1 LSB (absolute resolution)")


def _bits(code: int, width: int) -> str:
    from bitstring import Bits

    return Bits(uint=code, length=width).bin


def show_format(console: Console, spec: str, value: float | None, rounding: str) -> None:
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
        q = quantize(np.array([value]), fmt, rounding, "saturate")
        code = int(q.codes[0])
        u = code & ((1 << fmt.width) - 1)
        b = _bits(u, fmt.width)
        ib = fmt.width - fmt.frac
        if fmt.signed:
            fields = f"sign {b[0]} | int {b[1:max(ib, 1)] or '-'} | frac {b[max(ib, 1):] or '-'}"
        else:
            fields = f"int {b[:max(ib, 0)] or '-'} | frac {b[max(ib, 0):] or '-'}"
        dec = float(q.to_float()[0])
        console.print(f"value {value!r} -> code {code} = 0x{u:0{fmt.hex_digits}x} = 0b{b}")
        console.print(f"fields: {fields}")
        console.print(f"decoded {dec!r}, error {dec - value:+.3g} ({rounding}, saturate)")
        return
    if isinstance(fmt, FloatFormat):
        console.print(
            f"[bold]{fmt}[/]: e{fmt.exp}m{fmt.man}, bias {fmt.bias}, specials {fmt.specials}, overflow {fmt.overflow}, "
            f"subnormals {'yes' if fmt.subnormals else 'no'}; max {fmt.max:.10g}, min normal {fmt.min_normal:.10g}, "
            f"min subnormal {fmt.min_subnormal:.10g}, epsilon {fmt.epsilon:.10g}"
        )
        if value is None:
            return
        a = encode(np.array([value], dtype=np.float64), fmt, rounding)
        code = int(a.codes[0])
        b = _bits(code, fmt.bits)
        s = 1 if fmt.signed else 0
        sign = b[:s]
        e = b[s:s + fmt.exp]
        m = b[s + fmt.exp:]
        dec = float(a.to_float()[0])
        console.print(f"value {value!r} -> code 0x{code:0{fmt.hex_digits}x} = 0b{b}")
        console.print(f"fields: sign {sign or '-'} | exponent {e} | mantissa {m or '-'}")
        console.print(f"decoded {dec!r}, error {dec - value:+.3g} ({rounding})")
        return
    console.print(f"[bold]{spec}[/]: {fmt}")
    if value is not None:
        raise UserError("--show is for scalar formats; MX block formats quantise whole blocks")


def register(app: typer.Typer) -> None:
    @app.command("formats")
    def formats(
        spec: str | None = typer.Argument(None, help="a format spec: s16.12, u8.8, fp16, e4m3fn, e5m2:sat, mxfp8_e4m3..."),
        show: float | None = typer.Option(None, "--show", help="encode this value and print its code and bit fields"),
        rounding: str = typer.Option("rne", "--rounding", help="rounding mode for --show"),
    ) -> None:
        """List the formats with their range and resolution, or show one format (and encode a value)."""
        console = make_console()
        from refmodel.numerics.rounding import Rounding

        try:
            Rounding.parse(rounding)
        except ValueError as e:
            raise UserError(str(e)) from None
        if spec is None:
            if show is not None:
                raise UserError("--show needs a format spec, e.g. refmodel formats s16.12 --show 1.3")
            list_formats(console)
        else:
            show_format(console, spec, show, rounding)

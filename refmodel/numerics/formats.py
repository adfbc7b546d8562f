"""One entry point for format spec strings: fixed (``s16.12``), float (``e4m3fn``, ``fp16``,
``e5m2:sat``) and MX block (``mxfp8_e4m3``) formats.

``parse_format(spec)`` returns a :class:`FixedFormat`, :class:`FloatFormat` or ``BlockFormat``;
an unknown spec raises ``ValueError`` naming it and listing what is accepted; a recognisable but
wrong one (``e4m3fn:inf``, ``fp16:sat,inf``, ``s8.4:sat``) raises ``ValueError`` with the reason.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .fixed import FixedFormat
from .inputs import InputTypeError
from .minifloat import PRESETS, FloatFormat

if TYPE_CHECKING:
    from .block import BlockFormat

__all__ = ["parse_format", "is_fixed_spec", "FLOAT64"]

#: the spec string meaning "no quantisation: exact float64"
FLOAT64 = "float64"
_FIXED = re.compile(r"^\s*[su]\d+\.-?\d+\s*$", re.IGNORECASE)


def is_fixed_spec(spec: str) -> bool:
    return bool(_FIXED.match(str(spec)))


def parse_format(spec: str | FixedFormat | FloatFormat | BlockFormat) -> FixedFormat | FloatFormat | BlockFormat:
    """Spec string (or format object, returned as is) -> format object. See the module docstring.

    A spec whose kind is recognisable (a fixed ``s``/``u`` spec, a float preset or ``e<E>m<M>``, an
    ``mx`` name) but which is wrong raises ``ValueError`` with that kind's specific reason
    (``e4m3fn:inf`` -> e4m3fn has no inf); anything else is an unknown format. A value that is
    neither a string nor a format raises :class:`~refmodel.numerics.inputs.InputTypeError`."""
    from .block import BlockFormat

    if isinstance(spec, (FixedFormat, FloatFormat, BlockFormat)):
        return spec
    if not isinstance(spec, str):
        raise InputTypeError(f"a format spec must be a string such as 's16.12' or 'e4m3fn' (or a format object), "
                             f"got {type(spec).__name__} {spec!r}")
    text = spec.strip()
    if is_fixed_spec(text):
        return FixedFormat.parse(text)
    low = text.lower()
    base = low.partition(":")[0].strip()
    if _FIXED.match(base):
        raise ValueError(f"bad fixed-point spec {spec!r}: a fixed-point format takes no :tags (the rounding and "
                         f"overflow modes are chosen where values are quantized)")
    if low.startswith("mx"):
        return BlockFormat.parse(low)
    if base in PRESETS or re.fullmatch(r"e\d+m\d+", base):
        return FloatFormat.parse(low)  # its ValueError names the specific problem
    raise ValueError(
        f"unknown format {spec!r}: expected fixed point s<width>.<frac> / u<width>.<frac> (e.g. s16.12), "
        f"a float preset ({', '.join(PRESETS)}) optionally with :sat/:inf/:nan, "
        f"e<E>m<M>[:tags], or an MX block format (mxfp8_e4m3, mxfp8_e5m2, mxfp6_e3m2, mxfp6_e2m3, mxfp4, mxint8)"
    )

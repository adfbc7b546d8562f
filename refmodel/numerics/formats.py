"""One entry point for format spec strings: fixed (``s16.12``), float (``e4m3fn``, ``fp16``,
``e5m2:sat``) and MX block (``mxfp8_e4m3``) formats.

``parse_format(spec)`` returns a :class:`FixedFormat`, :class:`FloatFormat` or ``BlockFormat``;
an unknown spec raises ``ValueError`` naming it and listing what is accepted.
"""

from __future__ import annotations

import re

from .fixed import FixedFormat
from .minifloat import PRESETS, FloatFormat

__all__ = ["parse_format", "is_fixed_spec", "FLOAT64"]

#: the spec string meaning "no quantisation: exact float64"
FLOAT64 = "float64"
_FIXED = re.compile(r"^\s*[su]\d+\.-?\d+\s*$", re.IGNORECASE)


def is_fixed_spec(spec: str) -> bool:
    return bool(_FIXED.match(str(spec)))


def parse_format(spec):
    """Spec string (or format object) -> format object. See the module docstring."""
    if not isinstance(spec, str):
        return spec
    text = spec.strip()
    if is_fixed_spec(text):
        return FixedFormat.parse(text)
    low = text.lower()
    if low.startswith("mx"):
        from .block import BlockFormat

        return BlockFormat.parse(low)
    try:
        return FloatFormat.parse(low)
    except ValueError:
        pass
    raise ValueError(
        f"unknown format {spec!r}: expected fixed point s<width>.<frac> / u<width>.<frac> (e.g. s16.12), "
        f"a float preset ({', '.join(PRESETS)}) optionally with :sat/:inf/:nan, "
        f"e<E>m<M>[:tags], or an MX block format (mxfp8_e4m3, mxfp8_e5m2, mxfp6_e3m2, mxfp6_e2m3, mxfp4, mxint8)"
    )

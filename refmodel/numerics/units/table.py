"""A lookup table of a hardware unit: its integer codes and the fixed-point format they are in.

The unit models return tables (:meth:`Exp2Params.table`, :meth:`ActParams.table`,
:meth:`SoftmaxParams.lut_table`); the vector-set writer above turns them into ``$readmemh``
files, so the numerics know no file format.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from refmodel.numerics.fixed import FixedFormat

__all__ = ["UnitTable"]


@dataclass(frozen=True)
class UnitTable:
    """``codes`` (int64, one per address 0 .. len-1) in ``fmt``; ``name`` says which table."""

    name: str
    codes: np.ndarray
    fmt: FixedFormat

    @property
    def width(self) -> int:
        """Word width of one entry (the format's width)."""
        return self.fmt.width

    def __len__(self) -> int:
        return int(self.codes.size)

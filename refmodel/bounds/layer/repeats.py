"""Repeated terms of a reduction over keys: where rounding errors stop being independent.

The statistical tiers treat rounding errors as independent and mean-zero (Azuma-Hoeffding over
the actual partial sums). A prompt that repeats a token breaks that: its keys give identical
logits, identical exps (identical exp rounding errors) and identical ``p v`` products, and a
sequential accumulator adding the same value in the same binade makes the same rounding error
every time (measured: honest hardware exceeded such a tier by up to 7x). The softmax
and ``P V`` stages therefore mark, per row, the keys whose term repeats another key's term
(:func:`repeated_keys`) and sum their rounding errors linearly, as one fully correlated group.
The rigorous tier never assumes independence and needs none of this.
"""

from __future__ import annotations

import numpy as np

__all__ = ["repeated_keys", "row_ids"]


def repeated_keys(values: np.ndarray, allowed: np.ndarray, ids: np.ndarray | None = None) -> np.ndarray:
    """Bool mask, shaped like ``values`` (``[..., n]``, keys on the last axis): True where an
    allowed key's value (and ``ids``, when given, broadcast to ``values``) equals another allowed
    key's in the same row."""
    v = np.where(allowed, np.asarray(values, dtype=np.float64), np.nan)  # NaN never equals
    key = np.zeros(v.shape, dtype=np.int64) if ids is None else np.broadcast_to(ids, v.shape).astype(np.int64)
    order = np.lexsort((key, v), axis=-1)
    sv = np.take_along_axis(v, order, axis=-1)
    sk = np.take_along_axis(key, order, axis=-1)
    eq = (sv[..., 1:] == sv[..., :-1]) & (sk[..., 1:] == sk[..., :-1])
    rep = np.zeros(v.shape, dtype=bool)
    rep[..., 1:] |= eq
    rep[..., :-1] |= eq
    out = np.empty_like(rep)
    np.put_along_axis(out, order, rep, axis=-1)
    return out


def row_ids(t: np.ndarray) -> np.ndarray:
    """Per leading index, an id for every row of ``t`` (``[..., n, d]`` -> ``[..., n]``): equal ids
    for identical rows (identical tokens of a key / value tensor)."""
    a = np.asarray(t)
    lead = a.shape[:-2]
    flat = a.reshape((-1,) + a.shape[-2:])
    out = np.empty(flat.shape[:2], dtype=np.int64)
    for i, m in enumerate(flat):
        _, inv = np.unique(m, axis=0, return_inverse=True)
        out[i] = inv.reshape(-1)
    return out.reshape(lead + (a.shape[-2],))

"""A study's report: tables, PNG figures and claims, written as one self-contained folder.

Folder layout (``write_report``):

* ``report.html``: every section, table and figure (PNG inline as base64 ``data:`` URIs: the file
  opens anywhere without the folder), the claims with their verdicts, the command and options.
* ``results.json``: the same tables and claims as data, with a ``refmodel_report`` header (study
  name, refmodel version, command, options, creation time). That header is how a later run
  recognises a folder it may write into again.

Nothing else is written, nothing is deleted: a folder that is not empty and holds no
``results.json`` with that header is refused (``UserError`` naming it), and writing into an
earlier report replaces only ``report.html`` and ``results.json`` (each written to a temporary
file in the folder and renamed over, so an interrupted run leaves the previous file whole).
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import json
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError

__all__ = ["Table", "Figure", "Claim", "Section", "Report", "write_report", "check_out_dir", "fmt_num",
           "REPORT_FILES", "MARKER"]

#: the files a report folder holds (the only files ``write_report`` ever writes)
REPORT_FILES = ("report.html", "results.json")
#: top-level key of results.json that marks a folder as a refmodel report
MARKER = "refmodel_report"


def fmt_num(v: Any) -> str:
    """A table cell: floats as ``%.3g`` (exponent kept, never truncated), NaN/inf spelled out."""
    if isinstance(v, bool) or v is None:
        return "-" if v is None else ("yes" if v else "no")
    if isinstance(v, (int,)) and not isinstance(v, bool):
        return str(v)
    if isinstance(v, float) or hasattr(v, "dtype"):
        f = float(v)
        if math.isnan(f):
            return "nan"
        if math.isinf(f):
            return "inf" if f > 0 else "-inf"
        if f == int(f) and abs(f) < 1e6 and not isinstance(v, float):
            return str(int(f))
        return f"{f:.3g}"
    return str(v)


@dataclass
class Table:
    """A titled table: ``columns`` and ``rows`` (lists of cells: str, int, float, bool or None)."""

    title: str
    columns: list[str]
    rows: list[list[Any]]
    note: str = ""

    def __post_init__(self) -> None:
        for r in self.rows:
            if len(r) != len(self.columns):
                raise ValueError(f"table {self.title!r}: row {r!r} has {len(r)} cells for {len(self.columns)} columns")

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "columns": list(self.columns), "rows": [list(r) for r in self.rows],
                "note": self.note}


@dataclass
class Figure:
    """A PNG figure (bytes) with a caption."""

    title: str
    png: bytes
    caption: str = ""


@dataclass
class Claim:
    """One claim put to the measurement: what is claimed (``statement``, with its source), what the
    analysis predicts (``predicted``), what was measured (``measured``), whether it held."""

    statement: str
    predicted: str
    measured: str
    held: bool
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"statement": self.statement, "source": self.source, "predicted": self.predicted,
                "measured": self.measured, "held": self.held}


@dataclass
class Section:
    """A titled part of a report: a paragraph of text, tables and figures."""

    title: str
    text: str = ""
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)


@dataclass
class Report:
    """A study's report (see :func:`write_report`). ``data`` holds extra JSON-ready results."""

    study: str
    title: str
    summary: str
    options: dict[str, Any]
    sections: list[Section] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    command: str = ""

    def section(self, title: str, text: str = "") -> Section:
        s = Section(title, text)
        self.sections.append(s)
        return s

    def headline(self) -> list[Table]:
        """The first table of every section (what the CLI prints)."""
        return [s.tables[0] for s in self.sections if s.tables]

    def to_json(self) -> dict[str, Any]:
        from .. import __version__

        return {
            MARKER: {"study": self.study, "refmodel_version": __version__, "command": self.command,
                     "options": self.options,
                     "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")},
            "title": self.title,
            "summary": self.summary,
            "claims": [c.to_dict() for c in self.claims],
            "sections": [{"title": s.title, "text": s.text, "tables": [t.to_dict() for t in s.tables],
                          "figures": [{"title": f.title, "caption": f.caption} for f in s.figures]}
                         for s in self.sections],
            "data": self.data,
        }

    def to_html(self) -> str:
        e = html.escape
        parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{e(self.title)}</title>",
                 f"<style>{_CSS}</style></head><body>", f"<h1>{e(self.title)}</h1>", f"<p>{_para(self.summary)}</p>"]
        meta = [("command", self.command or f"refmodel study {self.study}")] + \
            [(k, json.dumps(v) if not isinstance(v, str) else v) for k, v in self.options.items()]
        parts.append("<table class='meta'>" + "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in meta)
                     + "</table>")
        if self.claims:
            parts.append("<h2>Claims</h2><table><tr><th>claim</th><th>predicted</th><th>measured</th><th>held</th></tr>")
            for c in self.claims:
                verdict = "<td class='ok'>held</td>" if c.held else "<td class='bad'>did NOT hold</td>"
                src = f"<br><span class='src'>{e(c.source)}</span>" if c.source else ""
                parts.append(f"<tr><td>{e(c.statement)}{src}</td><td>{e(c.predicted)}</td><td>{e(c.measured)}</td>"
                             f"{verdict}</tr>")
            parts.append("</table>")
        for s in self.sections:
            parts.append(f"<h2>{e(s.title)}</h2>")
            if s.text:
                parts.append(f"<p>{_para(s.text)}</p>")
            for t in s.tables:
                parts.append(_table_html(t))
            for f in s.figures:
                b64 = base64.b64encode(f.png).decode("ascii")
                parts.append(f"<figure><img alt='{e(f.title)}' src='data:image/png;base64,{b64}'>"
                             f"<figcaption><b>{e(f.title)}</b>. {e(f.caption)}</figcaption></figure>")
        parts.append("</body></html>\n")
        return "\n".join(parts)


_CSS = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:0.8em 0;font-size:13px}"
        "th,td{border:1px solid #bbb;padding:3px 7px;text-align:right;vertical-align:top}"
        "th{background:#eee}td:first-child,th:first-child{text-align:left}"
        "table.meta td,table.meta th{text-align:left}"
        ".ok{background:#d9f2d9;text-align:center}.bad{background:#f8d0d0;text-align:center}"
        ".src{color:#666;font-size:11px}caption{font-weight:bold;text-align:left;padding:4px 0}"
        ".note{color:#444;font-size:12px}figure{margin:1em 0}img{max-width:100%}")


def _para(text: str) -> str:
    return "</p><p>".join(html.escape(p) for p in text.split("\n\n"))


def _table_html(t: Table) -> str:
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in t.columns)
    body = "".join("<tr>" + "".join(f"<td>{e(fmt_num(v))}</td>" for v in r) + "</tr>" for r in t.rows)
    note = f"<p class='note'>{e(t.note)}</p>" if t.note else ""
    return f"<table><caption>{e(t.title)}</caption><tr>{head}</tr>{body}</table>{note}"


def _is_report_dir(p: Path) -> bool:
    f = p / "results.json"
    if not f.is_file():
        return False
    try:
        d = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(d, dict) and isinstance(d.get(MARKER), dict)


def check_out_dir(out: str | Path) -> Path:
    """``out`` as a Path if a report may be written there (missing, empty, or an earlier refmodel
    report), else ``UserError`` naming it. Call before any work so a bad ``--out`` fails fast."""
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise UserError(f"--out {str(p)!r} is a file, not a directory")
    if p.is_dir() and any(p.iterdir()) and not _is_report_dir(p):
        raise UserError(f"--out {str(p)!r} is not empty and is not a refmodel report (no results.json written by "
                        f"refmodel study): choose a new or empty directory")
    return p


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a report is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_report(report: Report, out: str | Path) -> Path:
    """Write ``report.html`` and ``results.json`` into ``out`` (created if missing; see the module
    docstring for what is refused). Returns the folder."""
    from ..commands._common import json_ready

    p = check_out_dir(out)
    p.mkdir(parents=True, exist_ok=True)
    _atomic_write(p / "results.json", json.dumps(json_ready(report.to_json()), indent=1, sort_keys=False) + "\n")
    _atomic_write(p / "report.html", report.to_html())
    return p


def png_bytes(fig: Any) -> bytes:
    """A matplotlib figure as PNG bytes (100 dpi: legible at 100% zoom at the sizes the studies
    use); the figure is closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def table_from_dicts(title: str, rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None,
                     note: str = "") -> Table:
    """A :class:`Table` from a list of dicts (columns: the given order, else the first row's keys)."""
    cols = list(columns) if columns is not None else (list(rows[0]) if rows else [])
    return Table(title, cols, [[r.get(c) for c in cols] for r in rows], note)

"""The compare gate's report as text (rich), GitHub markdown (for a CI comment) or JSON."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from uqbench.results.compare.gate import Comparison
from uqbench.results.compare.rules import LABELS, SHOWN, STATUSES
from uqbench.results.formatting import format_number, format_p, markdown_escape, markdown_table
from uqbench.store import jsonable

__all__ = ["FORMATS", "render", "render_json", "render_markdown", "render_text"]

FORMATS = ("text", "markdown", "json")


def _change(r: Mapping[str, Any]) -> str:
    """Speed: the floored ratio; quality: the relative change, or the absolute one below the floor."""
    if r["family"] == "speed":
        if not math.isfinite(r["ratio"]):
            return "—"
        below = r["floor"] > 0 and min(r["base"], r["new"]) < r["floor"]
        return f"x{r['ratio']:.3g}" + (" (floor)" if below else "")
    rel, diff = r["rel_change"], r["new"] - r["base"]
    if not math.isfinite(rel):
        return "—"
    if abs(r["base"]) < r["floor"]:
        return f"{diff:+.3g} abs"
    return f"{rel:+.1%}"


def _display_rows(c: Comparison, show_all: bool) -> list[dict[str, Any]]:
    rows = c.rows.to_dict("records")
    if not show_all:
        rows = [r for r in rows if r["status"] in SHOWN]
    rank = {s: i for i, s in enumerate(STATUSES)}
    return sorted(rows, key=lambda r: rank[r["status"]])  # stable: run order within a status


_HEADER = ["adapter", "dataset", "split", "metric", "base", "new", "change", "limit", "test", "p", "verdict"]


def _cells(r: Mapping[str, Any]) -> list[str]:
    limit = f"x{r['threshold']:.3g}" if r["family"] != "info" and r["higher_is_better"] is not None else ""
    return [
        r["adapter"], r["dataset"], r["split"], r["metric"], format_number(r["base"], 4), format_number(r["new"], 4),
        _change(r), limit, r["test"], format_p(r["p_value"]), LABELS[r["status"]],
    ]


def _heading(c: Comparison) -> str:
    over = ", ".join(f"{k} x{v:g}" for k, v in c.thresholds.items())
    return (
        f"suite {c.suite}; seeds BASE {_seeds(c.seeds[0])}, NEW {_seeds(c.seeds[1])}; "
        f"alpha {c.alpha:g}; limits: quality x{c.default_threshold:g}, speed x{c.speed_threshold:g}"
        + (f", {over}" if over else "")
    )


def _seeds(seeds: Sequence[int]) -> str:
    return ",".join(str(s) for s in seeds) or "none"


def _counts(c: Comparison) -> str:
    counts = c.rows["status"].value_counts() if len(c.rows) else {}
    parts = [f"{counts.get(s, 0)} {LABELS[s].lower()}" for s in STATUSES if counts.get(s, 0)]
    return f"{len(c.rows)} rows compared: " + (", ".join(parts) if parts else "none")


def _verdict(c: Comparison) -> str:
    n = len(c.regressions)
    if not n:
        return "uqbench compare: no regressions (exit 0)"
    return f"uqbench compare: {n} regression(s) (exit 1)"


def render_text(c: Comparison, *, show_all: bool = False, width: int = 200) -> str:
    """Plain-text report: heading, a table of the notable rows, failed cells, notes, verdict."""
    from rich.console import Console
    from rich.table import Table

    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system=None, force_terminal=False, force_jupyter=False, highlight=False)
    console.print(f"BASE {c.base_dir}\nNEW  {c.new_dir}\n{_heading(c)}", soft_wrap=True)
    rows = _display_rows(c, show_all)
    if rows:
        table = Table(title=None if show_all else "changes beyond the limits", title_justify="left")
        for i, h in enumerate(_HEADER):
            table.add_column(h, justify="right" if 4 <= i <= 9 else "left", no_wrap=i < 4)
        for r in rows:
            table.add_row(*_cells(r))
        console.print(table)
    else:
        console.print("no metric changed beyond its limit")
    console.print(_counts(c), soft_wrap=True)
    failed = [r for r in c.regressions if r.kind == "failed_cell"]
    if failed:
        console.print(f"{len(failed)} cell(s) ok in BASE failed in NEW:", soft_wrap=True)
        for r in failed:
            console.print(f"  {r.describe()}", soft_wrap=True)
    if c.notes:
        console.print("notes:")
        for note in c.notes:
            console.print(f"  {note}", soft_wrap=True)
    metric_regs = [r for r in c.regressions if r.kind == "metric"]
    if metric_regs:
        console.print("regressions:")
        for r in metric_regs:
            console.print(f"  {r.describe()}", soft_wrap=True)
    console.print(_verdict(c), soft_wrap=True)
    return "".join(line.rstrip() + "\n" for line in buf.getvalue().splitlines())


def _md_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    right = {"base", "new", "change", "limit", "p"}
    body = []
    for r in rows:
        cells = _cells(r)
        if r["status"] == "regression":
            cells[-1] = f"**{cells[-1]}**"
        body.append(cells)
    align = ["---:" if h in right else "---" for h in _HEADER]
    return markdown_table(_HEADER, body, align=align).split("\n")


def render_markdown(c: Comparison, *, show_all: bool = False) -> str:
    """GitHub-flavoured markdown for a CI comment: verdict, pipe table, failed cells, notes."""
    n = len(c.regressions)
    title = f"**{n} regression(s)**" if n else "no regressions"
    lines = [
        f"### uqbench compare: {title}",
        "",
        f"BASE `{c.base_dir}` vs NEW `{c.new_dir}`; {_heading(c)}",
        "",
    ]
    rows = _display_rows(c, show_all)
    regressed = [r for r in rows if r["status"] == "regression"]
    others = [r for r in rows if r["status"] != "regression"]
    if regressed:
        lines += _md_table(regressed)
    if others:
        what = "compared rows" if show_all else "changes beyond the limits (not significant, or improvements)"
        lines += ["", f"<details><summary>{len(others)} other {what}</summary>", ""]
        lines += [*_md_table(others), "", "</details>"]
    if not rows:
        lines.append("No metric changed beyond its limit.")
    lines += ["", _counts(c) + "."]
    failed = [r for r in c.regressions if r.kind == "failed_cell"]
    if failed:
        lines += ["", "**Cells ok in BASE that failed in NEW:**", ""]
        lines += [f"- {markdown_escape(r.describe())}" for r in failed]
    if c.notes:
        lines += ["", "Notes:", ""]
        lines += [f"- {markdown_escape(note)}" for note in c.notes]
    return "\n".join(lines) + "\n"


def render_json(c: Comparison) -> str:
    """JSON: ``exit_code``, ``regressions`` (list of objects), ``notes``, settings and every ``rows`` entry; NaN -> null."""
    data = {
        "exit_code": c.exit_code,
        "regressions": [{**asdict(r), "message": r.describe()} for r in c.regressions],
        "notes": c.notes,
        "base": c.base_dir,
        "new": c.new_dir,
        "suite": c.suite,
        "seeds": {"base": c.seeds[0], "new": c.seeds[1]},
        "alpha": c.alpha,
        "default_threshold": c.default_threshold,
        "speed_threshold": c.speed_threshold,
        "thresholds": c.thresholds,
        "counts": {s: int((c.rows["status"] == s).sum()) for s in STATUSES},
        "rows": c.rows.to_dict("records"),
    }
    return json.dumps(jsonable(data), indent=2, allow_nan=False) + "\n"


def render(c: Comparison, fmt: str = "text", *, show_all: bool = False) -> str:
    if fmt == "json":
        return render_json(c)
    if fmt == "markdown":
        return render_markdown(c, show_all=show_all)
    if fmt == "text":
        return render_text(c, show_all=show_all)
    raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")



"""Render the report page: data dicts -> figures -> one self-contained HTML file.

Jinja2 with autoescape on: every string from a run (adapter, dataset, metric names, error
messages) is escaped by the template. Figures are :class:`markupsafe.Markup` built by
:mod:`uqbench.report.figures`, which escapes its own text. The page data is embedded as
``<script type="application/json">`` with ``<``, ``>``, ``&`` and the JS line separators
written as ``\\uXXXX`` escapes, so no string can close the script element.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from uqbench import store
from uqbench.report import figures
from uqbench.report.data import build_report_data
from uqbench.results.formatting import format_compact

__all__ = ["embed_json", "render_html", "write_report"]

# Keys left out of the embedded JSON: raw pixels are already in the figures.
_HEAVY_KEYS = ("pixels", "inputs", "recon_mean", "recon_std")

SECTIONS = (
    ("meta", "Run"),
    ("leaderboard", "Leaderboard"),
    ("papers", "Papers' tables"),
    ("fidelity", "Posterior fidelity"),
    ("calibration", "Calibration"),
    ("toy", "Toy regression"),
    ("ood", "Off-distribution"),
    ("speed", "Speed"),
    ("gradvar", "Gradient variance"),
    ("latent", "Latent-variable models"),
    ("failures", "Failures"),
    ("definitions", "Metric definitions"),
)


def embed_json(obj: Any) -> Markup:
    """JSON for a ``<script type="application/json">`` element that no string can break out of."""
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for ch, esc in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return Markup(text)


def _strip_heavy(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip_heavy(v) for k, v in obj.items() if k not in _HEAVY_KEYS}
    if isinstance(obj, list):
        return [_strip_heavy(v) for v in obj]
    return obj


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("uqbench.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = format_compact
    env.filters["int_sep"] = lambda v: "–" if v is None else f"{round(float(v)):,}"
    return env


def _figures(data: dict[str, Any]) -> dict[str, Any]:
    """The SVG figures, keyed to mirror the data sections."""
    out: dict[str, Any] = {}
    out["calibration"] = [
        [figures.calibration_figure(p, kind=sec["kind"]) for p in sec["panels"]] for sec in data["calibration"]
    ]
    out["toy"] = [[figures.toy_figure(p, p.get("regions", [])) for p in sec["panels"]] for sec in data["toy"]]
    out["ood"] = [
        [
            {
                "hist": [figures.ood_hist_figure(h, ood_name=s["name"]) for h in s["hist"]],
                "roc": figures.roc_figure(s["roc"], ood_name=s["name"]) if s["roc"] else None,
            }
            for s in sec["sets"]
        ]
        for sec in data["ood"]
    ]
    out["tradeoff"] = [figures.tradeoff_figure(t) for t in data["speed"].get("tradeoff", [])]
    out["gradvar"] = [
        [figures.gradvar_figure(layer, dataset=sec["dataset"]) for layer in sec["layers"]] for sec in data["gradvar"]
    ]
    out["latent"] = [
        {
            "scatter": figures.latent_scatter_figure(p["scatter"]) if p.get("scatter") else None,
            "manifold": figures.manifold_figure(p["manifold"]) if p.get("manifold") else None,
            "recon": figures.recon_figure(p["recon"]) if p.get("recon") else None,
        }
        for p in data["latent"]
    ]
    return out


def render_html(data: dict[str, Any]) -> str:
    """The page for report data built by :func:`uqbench.report.data.build_report_data`."""
    present = {
        "meta": True,
        "leaderboard": bool(data["leaderboard"]),
        "papers": bool(data["papers"]),
        "fidelity": bool(data["fidelity"]),
        "calibration": bool(data["calibration"]),
        "toy": bool(data["toy"]),
        "ood": bool(data["ood"]),
        "speed": bool(data["speed"]),
        "gradvar": bool(data["gradvar"]),
        "latent": bool(data["latent"]),
        "failures": bool(data["failures"]),
        "definitions": bool(data["definitions"]),
    }
    toc = [(key, title) for key, title in SECTIONS if present[key]]
    template = _environment().get_template("report.html.j2")
    return template.render(
        d=data,
        fig=_figures(data),
        toc=toc,
        present=present,
        blob=embed_json(_strip_heavy(data)),
    )


def write_report(run_dir: str | Path) -> Path:
    """Build the report of ``run_dir`` and write it to ``run_dir/index.html``.

    Returns
    -------
    The path of the written file.

    Raises
    ------
    uqbench.store.NotARunDirError
        ``run_dir`` does not exist or has no ``run.json`` (a ``UserError``: one line, exit 2).
    """
    run_dir = Path(run_dir)
    html = render_html(build_report_data(run_dir))
    out = run_dir / "index.html"
    return store.write_atomic(out, html)  # a browser never sees a half-written page

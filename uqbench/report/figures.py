"""The report's figures: matplotlib draws each one, as an SVG fragment to inline in the page.

This module owns how the figures look (sizes, colours, labels, legends, axis scales) and
the adapters' colours (:func:`adapter_colors`, used by :mod:`uqbench.report.data`). Each
figure function takes one plain dict that :mod:`uqbench.report.data` built and returns
:class:`markupsafe.Markup` holding one ``<svg class="fig" role="img">`` element.

Rendering uses matplotlib's object-oriented API only (a :class:`~matplotlib.figure.Figure`
on an SVG canvas, never ``pyplot``, no ``matplotlib.use``); the settings live in a
:func:`matplotlib.rc_context` around each figure, so nothing leaks into the process:

- text stays text (``svg.fonttype: none``) and matplotlib's SVG writer escapes it; math
  parsing is off, so a ``$`` in an adapter name is just a character;
- identical input gives identical bytes: a fixed ``svg.hashsalt`` and no date stamp;
- the XML prolog and DOCTYPE are dropped; ids that something refers to (clip paths,
  markers) get a per-figure prefix so many figures can share one page, the others are
  dropped; coordinates are rounded to 0.01 px; text takes the page's font;
- images (decoded latent grids, reconstructions, heat maps in colormap ``viridis``) are
  drawn with ``imshow``, which embeds them as PNG data URIs: the page fetches nothing.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import matplotlib
import numpy as np
from markupsafe import Markup, escape
from matplotlib.axis import Axis
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.ticker import (
    FixedLocator,
    FuncFormatter,
    LogLocator,
    MaxNLocator,
    NullFormatter,
    NullLocator,
)

from uqbench.results.formatting import format_compact

__all__ = [
    "PALETTE",
    "adapter_colors",
    "calibration_figure",
    "gradvar_figure",
    "latent_scatter_figure",
    "manifold_figure",
    "ood_hist_figure",
    "recon_figure",
    "roc_figure",
    "toy_figure",
    "tradeoff_figure",
]

# Colour-blind friendly categorical palette (Tableau 10 order, slightly darkened for text).
PALETTE = (
    "#4e79a7", "#f28e2b", "#e15759", "#59a14f", "#b07aa1",
    "#76b7b2", "#edc948", "#9c755f", "#ff9da7", "#7f7f7f",
)
INK = "#222222"
MUTED = "#666666"
GRID = "#e6e6e6"
FRAME = "#bbbbbb"
REGION_COLORS = {"gap": "#f6c85f", "outside": "#9dc3e6"}
HEAT_CMAP = "viridis"  # per-pixel standard deviations
GREY_CMAP = "gray_r"   # pixel intensities in [0, 1], ink dark on white

# Every figure is drawn under these settings only (see the module docstring).
_RC: dict[str, Any] = {
    "svg.fonttype": "none",
    "svg.hashsalt": "uqbench",
    "svg.image_inline": True,
    "text.parse_math": False,
    "text.usetex": False,
    "font.family": "sans-serif",
    "font.size": 10,
    "text.color": INK,
    "axes.facecolor": "white",
    "axes.edgecolor": FRAME,
    "axes.linewidth": 1.0,
    "axes.labelcolor": INK,
    "axes.labelsize": 11,
    "axes.labelpad": 3,
    "axes.titlesize": 12,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.titlepad": 6,
    "axes.titley": 1.0,  # a fixed title position: no search for overlapping tick labels
    "axes.grid": True,
    "axes.axisbelow": True,
    "axes.formatter.useoffset": False,
    "grid.color": GRID,
    "grid.linewidth": 1.0,
    "xtick.major.size": 0,
    "ytick.major.size": 0,
    "xtick.minor.size": 0,
    "ytick.minor.size": 0,
    "xtick.major.pad": 4,
    "ytick.major.pad": 4,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "xtick.labelcolor": MUTED,
    "ytick.labelcolor": MUTED,
    "legend.fontsize": 10,
    "legend.loc": "upper left",
    "legend.framealpha": 0.85,
    "legend.edgecolor": "#dddddd",
    "legend.fancybox": True,
    "legend.borderaxespad": 0.5,
    "legend.borderpad": 0.35,
    "legend.labelspacing": 0.3,
    "legend.handlelength": 1.6,
    "legend.handletextpad": 0.4,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
    "path.simplify": True,
    "image.interpolation": "none",
}
# No RDF block at all: no date (determinism), no creator/type URLs.
_SVG_METADATA = {"Date": None, "Creator": None, "Format": None, "Type": None}
# Margins of the plot area in px: (top, right, bottom, left).
_MARGIN = (26, 12, 40, 54)


def adapter_colors(names: Iterable[str]) -> dict[str, str]:
    """One fixed ``#rrggbb`` colour per adapter, in the given order (palette first, then golden-angle hues)."""
    out: dict[str, str] = {}
    for i, name in enumerate(dict.fromkeys(names)):
        if i < len(PALETTE):
            out[name] = PALETTE[i]
        else:  # hsl(hue, 55%, 45%)
            r, g, b = colorsys.hls_to_rgb(((i * 137.508) % 360) / 360, 0.45, 0.55)
            out[name] = f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"
    return out



def _tick_label(t: float, _pos: Any = None) -> str:
    """Shortest plain label of a tick value (``0.0005``, ``2.5``, ``1e+06`` -> ``1e6``)."""
    s = f"{t:.6g}"
    return "0" if s == "-0" else s.replace("e-0", "e-").replace("e+0", "e").replace("e+", "e")


_TICK_FORMATTER = FuncFormatter(_tick_label)


def _arr(v: Any) -> np.ndarray:
    """A list from the data dict (None for missing values) as float64 with NaN."""
    return np.asarray([np.nan if x is None else x for x in v], dtype=np.float64)


def _max(a: Any, default: float) -> float:
    """Largest finite value of ``a`` (``default`` when there is none); never warns."""
    v = np.asarray(a, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    return float(v.max()) if v.size else default


def _data_range(values: Any, *, pad: float = 0.05, default: tuple[float, float] = (0.0, 1.0)) -> tuple[float, float]:
    """``(lo, hi)`` of the finite values, widened by ``pad`` of the span on each side.

    A single value gets ``±0.5·max(|v|, 1)``; no finite value gives ``default``.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return default
    lo, hi = float(v.min()), float(v.max())
    if hi - lo < 1e-12 * max(1.0, abs(lo)):
        d = 0.5 * max(abs(lo), 1.0)
        return lo - d, hi + d
    span = hi - lo
    return lo - pad * span, hi + pad * span


def _log_range(values: Any, *, pad: float) -> tuple[float, float]:
    """``(lo, hi)`` of the positive finite values on a log axis, padded by ``pad`` decades-span."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v) & (v > 0)]
    if v.size == 0:
        return 0.1, 10.0
    llo, lhi = math.log10(float(v.min())), math.log10(float(v.max()))
    if lhi - llo < 1e-12:
        llo, lhi = llo - 0.5, lhi + 0.5
    span = lhi - llo
    return 10 ** (llo - pad * span), 10 ** (lhi + pad * span)


# ---------------------------------------------------------------------------------------
# One figure on the SVG canvas, and its clean-up for inlining

_TAG = re.compile(r"<[^>]*>")
_STYLE_BLOCK = re.compile(r"\s*<defs>\s*<style[^>]*>.*?</style>\s*</defs>", re.S)
_ID = re.compile(r'\sid="([^"]*)"')
_REF = re.compile(r'(url\(#|href="#)([^)"]+)')
_LONG_FLOAT = re.compile(r"(-?\d+\.\d{3,})")
_FONT_FAMILY = re.compile(r"font-family: [^;\"]*(; )?")
_VIEWBOX = re.compile(r'viewBox="([^"]*)"')


def _round(m: re.Match[str]) -> str:
    s = f"{float(m.group(1)):.2f}".rstrip("0").rstrip(".")
    return "0" if s == "-0" else s


def _inline_svg(svg: str, *, label: str, width: int, height: int, tips: dict[str, str]) -> Markup:
    """matplotlib's SVG document as one element for an HTML page (see the module docstring).

    ``tips`` maps a group id (an artist's gid) to the tooltip text placed in that group as
    an SVG ``<title>``. Only matplotlib wrote inside the tags here: the text between them is
    already escaped by its writer, so the tag-level rewrites below cannot touch user text.
    """
    svg = _STYLE_BLOCK.sub("", svg[svg.index("<svg"):], count=1)
    refs = {m.group(2) for tag in _TAG.findall(svg) for m in _REF.finditer(tag)}
    prefix = "f" + hashlib.sha1(svg.encode("utf-8")).hexdigest()[:8] + "-"

    def tag(m: re.Match[str]) -> str:
        t = m.group(0)
        if t.startswith("<svg"):
            vb = _VIEWBOX.search(t)
            lab = escape(label)
            return (f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
                    f'class="fig" role="img" aria-label="{lab}" width="{width}" height="{height}" '
                    f'viewBox="{vb.group(1) if vb else f"0 0 {width} {height}"}" '
                    f'stroke-linejoin="round" stroke-linecap="butt"><title>{lab}</title>')
        ids = _ID.search(t)
        tip = tips.get(ids.group(1)) if ids else None
        t = _ID.sub(lambda i: f' id="{prefix}{i.group(1)}"' if i.group(1) in refs else "", t)
        t = _REF.sub(lambda r: f"{r.group(1)}{prefix}{r.group(2)}", t)
        t = _FONT_FAMILY.sub("", t.replace("base64,\n", "base64,"))
        t = _LONG_FLOAT.sub(_round, t)
        if "d=" in t:
            t = t.replace(" \n", " ").replace("\n", " ")
        return t + (f"<title>{escape(tip)}</title>" if tip is not None else "")

    svg = _TAG.sub(tag, svg)
    return Markup(re.sub(r">\s+<", "><", svg).strip())


class _Canvas:
    """A context manager: one figure with one Axes, drawn and rendered under :data:`_RC`.

    Sizes are px: the figure is ``width`` x ``height`` at 72 dpi (1 pt = 1 px of the
    viewBox), the plot area leaves ``margin`` = (top, right, bottom, left) around it.
    """

    def __init__(self, width: int, height: int, *, title: str = "", xlabel: str = "", ylabel: str = "",
                 margin: tuple[int, int, int, int] = _MARGIN, axes: bool = True) -> None:
        self.width, self.height, self.title = width, height, title
        self._labels, self._margin, self._axes = (xlabel, ylabel), margin, axes
        self._rc = matplotlib.rc_context(_RC)
        self._tips: dict[str, str] = {}

    def __enter__(self) -> _Canvas:
        self._rc.__enter__()
        w, h = self.width, self.height
        self.fig = Figure(figsize=(w / 72, h / 72), dpi=72)
        FigureCanvasSVG(self.fig)
        top, right, bottom, left = self._margin
        self.ax = ax = self.fig.add_axes((left / w, bottom / h, 1 - (left + right) / w, 1 - (top + bottom) / h))
        if self.title:
            ax.set_title(self.title)
        if self._axes:
            pw, ph = w - left - right, h - top - bottom
            ax.set_xlabel(self._labels[0])
            ax.set_ylabel(self._labels[1])
            # Fixed label places (no measuring of tick labels): the x label's top 22 px below
            # the plot, the y label's right edge 17 px from the figure's left edge.
            ax.xaxis.set_label_coords(0.5, -22 / ph)
            ax.yaxis.set_label_coords(-(left - 17) / pw, 0.5)
            # About one tick per 60 px across and 45 px up, at 1-2-2.5-5 steps.
            for axis, n in ((ax.xaxis, pw // 60), (ax.yaxis, ph // 45)):
                axis.set_major_locator(MaxNLocator(nbins=max(3, int(n)), steps=[1, 2, 2.5, 5, 10]))
                axis.set_major_formatter(_TICK_FORMATTER)
        else:
            ax.set_axis_off()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._rc.__exit__(*exc)

    def log_axis(self, which: str, lo: float, hi: float, ticks: Sequence[float] | None = None) -> None:
        """Make the ``"x"`` or ``"y"`` axis base-10 log over ``[lo, hi]`` with plain tick labels.

        Decades when the range spans two or more; 1-2-5 steps from about one decade down;
        round linear steps below that; ``ticks`` when given.
        """
        axis: Axis = self.ax.xaxis if which == "x" else self.ax.yaxis
        (self.ax.set_xscale if which == "x" else self.ax.set_yscale)("log")
        (self.ax.set_xlim if which == "x" else self.ax.set_ylim)(lo, hi)
        decades = math.log10(hi / lo)
        if ticks is not None:
            axis.set_major_locator(FixedLocator(list(ticks)))
        elif decades >= 2:
            axis.set_major_locator(LogLocator(base=10, subs=(1.0,)))
        elif decades >= 0.7:
            axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        else:
            axis.set_major_locator(MaxNLocator(4))
        axis.set_major_formatter(_TICK_FORMATTER)
        axis.set_minor_locator(NullLocator())
        axis.set_minor_formatter(NullFormatter())

    def point(self, x: float, y: float, *, color: str, r: float, tip: str, hollow: bool = False,
              alpha: float = 1.0) -> None:
        """One marker of radius ``r`` px whose hover tooltip is ``tip``."""
        gid = f"tip-{len(self._tips)}"
        self._tips[gid] = tip
        if hollow:
            style = {"mfc": "white", "mec": color, "mew": 1.8}
        else:
            style = {"mfc": to_rgba(color, alpha), "mec": "none", "mew": 0}
        self.ax.plot([x], [y], marker="o", ls="none", ms=2 * r, gid=gid, clip_on=False, **style)

    def diagonal(self, label: str) -> None:
        """The dashed ``y = x`` reference line over the unit square."""
        self.ax.plot([0, 1], [0, 1], color="#888888", lw=1.2, ls=(0, (4, 3)), label=label)

    def svg(self) -> Markup:
        """Render the figure and return it ready to inline (see :func:`_inline_svg`)."""
        buf = io.StringIO()
        self.fig.savefig(buf, format="svg", metadata=_SVG_METADATA)
        return _inline_svg(buf.getvalue(), label=self.title or "figure", width=self.width,
                           height=self.height, tips=self._tips)


# ---------------------------------------------------------------------------------------
# Figures


def calibration_figure(panel: dict[str, Any], *, kind: str) -> Markup:
    """Reliability diagram (``kind="reliability"``) or coverage curve (``"coverage"``) of one adapter.

    Reliability: accuracy per confidence bin as bars (points at the bin's mean confidence,
    area by its share of points, each with a tooltip) and the share of points per bin as a
    grey strip at the bottom; bins without points are left out.
    """
    color = panel["color"]
    x, y = _arr(panel["x"]), _arr(panel["y"])
    if kind == "reliability":
        xlabel, ylabel = "confidence (top-label probability)", "accuracy"
    else:
        xlabel, ylabel = "nominal coverage", "observed coverage"
    with _Canvas(280, 250, title=panel["adapter"], xlabel=xlabel, ylabel=ylabel) as c:
        ax = c.ax
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        if kind == "reliability":
            count = np.nan_to_num(_arr(panel.get("count") or [1.0] * len(x)))
            share = count / count.sum() if count.sum() > 0 else np.zeros_like(count)
            edges = panel.get("edges")
            if edges and len(edges) == len(x) + 1:
                e = _arr(edges)
                keep = (count > 0) & np.isfinite(y)
                left, width = e[:-1][keep], np.diff(e)[keep]
                ax.bar(left, y[keep], width=width, align="edge", color=to_rgba(color, 0.35),
                       edgecolor="white", linewidth=0.8, label="accuracy per bin")
                top = _max(share, 0.0)
                if top > 0:
                    ax.bar(left, 0.2 * share[keep] / top, width=width, align="edge",
                           color=to_rgba("#555555", 0.45), linewidth=0, label="share of points")
            c.diagonal("ideal")
            for a, b, n, s in zip(x, y, count, np.nan_to_num(share), strict=True):
                if np.isfinite(a) and np.isfinite(b):
                    c.point(a, b, color=color, r=2 + 5 * math.sqrt(s),
                            tip=f"confidence {format_compact(a)}, accuracy {format_compact(b)}, "
                                f"{format_compact(n)} points")
        else:
            c.diagonal("ideal")
            ax.plot(x, y, color=color, lw=1.8, marker="o", ms=5, label="observed")
        ax.legend(loc="upper left")
        return c.svg()


def toy_figure(panel: dict[str, Any], regions: Sequence[dict[str, Any]]) -> Markup:
    """Toy 1-D regression: data, mean, ±2σ total and epistemic bands, draws, shaded regions."""
    color = panel["color"]
    x = _arr(panel["x"])
    mean = _arr(panel["mean"])
    tot, epi = _arr(panel["total_sd"]), _arr(panel["epistemic_sd"])
    tx, ty = _arr(panel.get("train_x") or []), _arr(panel.get("train_y") or [])
    draws = [_arr(d) for d in panel.get("draws") or []]
    ylo, yhi = _data_range(np.concatenate([mean + 2 * tot, mean - 2 * tot, ty, *draws]))
    # Keep a wild extrapolation from squashing the data: clip to a generous multiple of the data range.
    if ty.size:
        dlo, dhi = _data_range(ty, pad=1.0)
        ylo, yhi = max(ylo, dlo), min(yhi, dhi)
    with _Canvas(480, 300, title=f"{panel['adapter']} (seed {panel['seed']})",
                 xlabel="x (standardized input)", ylabel="y") as c:
        ax = c.ax
        seen: set[str] = set()
        for r in regions:
            key = "gap" if "gap" in r["name"] else ("outside" if "outside" in r["name"] else None)
            if key is None:
                continue
            ax.axvspan(r["lo"], r["hi"], color=REGION_COLORS[key], alpha=0.22, lw=0,
                       label=f"{key} region" if key not in seen else None)
            seen.add(key)
        ax.fill_between(x, mean - 2 * tot, mean + 2 * tot, color=color, alpha=0.16, lw=0, label="±2σ total")
        ax.fill_between(x, mean - 2 * epi, mean + 2 * epi, color=color, alpha=0.38, lw=0, label="±2σ epistemic")
        for i, d in enumerate(draws):
            ax.plot(x, d, color=color, lw=1.0, alpha=0.9, label="function draws" if i == 0 else None)
        if tx.size:
            ax.plot(tx, ty, marker="o", ls="none", ms=3.2, mfc=to_rgba("#333333", 0.45), mec="none",
                    label="training data")
        ax.plot(x, mean, color=INK, lw=1.8, label="predictive mean")
        ax.set_xlim(*_data_range(x, pad=0.0))
        ax.set_ylim(ylo, yhi)
        ax.legend(loc="upper left")
        return c.svg()


def ood_hist_figure(panel: dict[str, Any], *, ood_name: str) -> Markup:
    """Histograms of the epistemic score, in-distribution vs one OOD set, for one adapter.

    A constant score (e.g. a deterministic net) gets a note instead of axes.

    This family is the report's largest (one figure per adapter, dataset and OOD set), so it
    is written as SVG directly instead of through matplotlib, which made the quick suite's
    report 2.6x slower to build (see docs/architecture.md). The tick values still come from
    matplotlib's :class:`~matplotlib.ticker.MaxNLocator` and the same labels and colours as
    the other figures; every string is escaped by :func:`markupsafe.escape`.
    """
    width, height = 280, 220
    title = str(panel["adapter"])
    if panel.get("constant"):
        note = f"(= {format_compact(panel.get('value'))} on both sets): nothing to separate"
        body = (f'<text x="{width / 2}" y="{height * 0.55:.0f}" text-anchor="middle" font-size="12" '
                f'fill="{MUTED}">epistemic score is constant</text>'
                f'<text x="{width / 2}" y="{height * 0.55 + 18:.0f}" text-anchor="middle" font-size="11" '
                f'fill="{MUTED}">{escape(note)}</text>')
        return _direct_svg(width, height, title, body)
    edges = _arr(panel["edges"])
    cin, cood = np.nan_to_num(_arr(panel["in_density"])), np.nan_to_num(_arr(panel["ood_density"]))
    xlabel = "log10 epistemic score" if panel.get("log") else "epistemic score"
    top, right, bottom, left = _MARGIN
    pw, ph = width - left - right, height - top - bottom
    x0, x1 = float(edges[0]), float(edges[-1])
    if not x1 > x0:
        x0, x1 = x0 - 0.5, x0 + 0.5
    y1 = _max([*cin, *cood], 1.0) * 1.1 or 1.0

    def sx(v: Any) -> np.ndarray:
        return left + (np.asarray(v, dtype=np.float64) - x0) / (x1 - x0) * pw

    def sy(v: Any) -> np.ndarray:
        return top + ph - np.asarray(v, dtype=np.float64) / y1 * ph

    parts = [f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="white"/>']
    for axis, (lo, hi), n in (("x", (x0, x1), pw // 60), ("y", (0.0, y1), ph // 45)):
        ticks = MaxNLocator(nbins=max(3, int(n)), steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
        for t in ticks[(ticks >= lo - 1e-9 * (hi - lo)) & (ticks <= hi + 1e-9 * (hi - lo))]:
            label = escape(_tick_label(float(t)))
            if axis == "x":
                px = float(sx(t))
                parts.append(f'<path d="M{px:.2f} {top}V{top + ph}" stroke="{GRID}"/>'
                             f'<text x="{px:.2f}" y="{top + ph + 14}" text-anchor="middle" font-size="10" '
                             f'fill="{MUTED}">{label}</text>')
            else:
                py = float(sy(t))
                parts.append(f'<path d="M{left} {py:.2f}H{left + pw}" stroke="{GRID}"/>'
                             f'<text x="{left - 4}" y="{py + 3.5:.2f}" text-anchor="end" font-size="10" '
                             f'fill="{MUTED}">{label}</text>')
    xs = np.repeat(sx(edges), 2)[1:-1]
    for density, color in ((cin, "#4e79a7"), (cood, "#e15759")):
        ys = np.repeat(sy(density), 2)
        pts = " ".join(f"{a:.2f} {b:.2f}" for a, b in zip(xs, ys, strict=True))
        parts.append(f'<path d="M{xs[0]:.2f} {top + ph}L{pts}L{xs[-1]:.2f} {top + ph}Z" fill="{color}" '
                     f'fill-opacity="0.5"/>')
    parts.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="{FRAME}"/>')
    parts.append(f'<text x="{left + pw / 2}" y="{top + ph + 33}" text-anchor="middle" font-size="11" '
                 f'fill="{INK}">{escape(xlabel)}</text>'
                 f'<text transform="translate({17 - 6} {top + ph / 2}) rotate(-90)" text-anchor="middle" '
                 f'font-size="11" fill="{INK}">density</text>')
    labels = ["in-distribution (test)", f"OOD: {ood_name}"]
    box_w = 30 + 5.8 * max(len(s) for s in labels)
    bx, by = left + pw - 6 - box_w, top + 6
    parts.append(f'<rect x="{bx:.2f}" y="{by}" width="{box_w:.2f}" height="36" rx="2" fill="white" '
                 f'fill-opacity="0.85" stroke="#dddddd"/>')
    for i, (label, color) in enumerate(zip(labels, ("#4e79a7", "#e15759"), strict=True)):
        yy = by + 6 + 15 * i
        parts.append(f'<rect x="{bx + 6:.2f}" y="{yy}" width="16" height="9" fill="{color}" fill-opacity="0.5"/>'
                     f'<text x="{bx + 27:.2f}" y="{yy + 8.5}" font-size="10" fill="{INK}">{escape(label)}</text>')
    return _direct_svg(width, height, title, "".join(parts))


def _direct_svg(width: int, height: int, title: str, body: str) -> Markup:
    """One ``<svg class="fig">`` element around ``body`` (already-escaped SVG), titled like the others."""
    lab = escape(title)
    return Markup(f'<svg xmlns="http://www.w3.org/2000/svg" class="fig" role="img" aria-label="{lab}" '
                  f'width="{width}" height="{height}" viewBox="0 0 {width} {height}"><title>{lab}</title>'
                  f'<rect width="{width}" height="{height}" fill="white"/>'
                  f'<text x="{_MARGIN[3]}" y="18" font-size="12" font-weight="bold" fill="{INK}">{lab}</text>'
                  f"{body}</svg>")


def roc_figure(curves: Sequence[dict[str, Any]], *, ood_name: str) -> Markup:
    """ROC curves of the epistemic score (OOD = positive), one line per adapter, AUROC in the legend."""
    with _Canvas(300, 280, title=f"ROC: test vs {ood_name}", xlabel="false positive rate",
                 ylabel="true positive rate") as c:
        c.ax.set_xlim(0, 1)
        c.ax.set_ylim(0, 1)
        c.diagonal("chance")
        for curve in curves:
            c.ax.plot(_arr(curve["fpr"]), _arr(curve["tpr"]), color=curve["color"], lw=1.8,
                      label=f"{curve['adapter']} (AUROC {format_compact(curve.get('auroc'))})")
        c.ax.legend(loc="lower right")
        return c.svg()


def tradeoff_figure(panel: dict[str, Any]) -> Markup:
    """Each adapter placed by fit time (x, log), calibration error (y); marker size = epistemic ratio.

    Hollow markers: ratio undefined. Each marker is labelled with the adapter and its ratio
    and has a tooltip with the three numbers.
    """
    pts = panel["points"]
    xs = _arr([q["x"] for q in pts])
    ys = _arr([q["y"] for q in pts])
    ratios = _arr([q.get("ratio") for q in pts])
    xlo, xhi = _log_range(xs, pad=0.25)
    finite = ratios[np.isfinite(ratios) & (ratios > 0)]
    top = float(np.log1p(finite.max())) if finite.size else 1.0
    with _Canvas(460, 320, title=panel["dataset"], xlabel="fit wall time, s (log) — faster ←",
                 ylabel=panel["y_label"] + " — better ↓", margin=(26, 16, 40, 58)) as c:
        c.log_axis("x", xlo, xhi)
        c.ax.set_ylim(*_data_range([*ys, 0.0], pad=0.25))
        for q, xv, yv, rr in zip(pts, xs, ys, ratios, strict=True):
            if not (np.isfinite(xv) and xv > 0 and np.isfinite(yv)):
                continue
            defined = bool(np.isfinite(rr) and rr > 0)
            rad = 5 + 13 * math.sqrt(math.log1p(rr) / top if top > 0 else 0) if defined else 5.0
            c.point(xv, yv, color=q["color"], r=rad, alpha=0.7, hollow=not defined,
                    tip=f"{q['adapter']}: fit {format_compact(xv)} s, {panel['y_label']} "
                        f"{format_compact(yv)}, epistemic ratio {format_compact(rr)}")
            label = f"{q['adapter']} (ratio {format_compact(rr) if np.isfinite(rr) else 'n/a'})"
            right_half = (math.log10(xv) - math.log10(xlo)) / math.log10(xhi / xlo) > 0.55
            c.ax.annotate(label, (xv, yv), xytext=(-(rad + 3) if right_half else rad + 3, 0),
                          textcoords="offset points", ha="right" if right_half else "left", va="center",
                          fontsize=10, color=q["color"], fontweight="bold", annotation_clip=False)
        return c.svg()


def gradvar_figure(panel: dict[str, Any], *, dataset: str) -> Markup:
    """Gradient variance vs batch size (log-log) for one layer, one line per adapter."""
    series = panel["series"]
    bs = np.concatenate([_arr(s["b"]) for s in series]) if series else np.array([1.0])
    vs = np.concatenate([_arr(s["v"]) for s in series]) if series else np.array([1.0])
    ticks = sorted({float(b) for b in bs if np.isfinite(b) and b > 0})
    with _Canvas(340, 260, title=f"{dataset}: {panel['layer']} layer", xlabel="batch size",
                 ylabel="gradient variance") as c:
        c.log_axis("x", *_log_range(bs, pad=0.08), ticks=ticks)
        c.log_axis("y", *_log_range(vs, pad=0.1))
        for s in series:
            b, v = _arr(s["b"]), _arr(s["v"])
            ok = np.isfinite(b) & np.isfinite(v) & (b > 0) & (v > 0)
            c.ax.plot(b[ok], v[ok], color=s["color"], lw=1.8, marker="o", ms=5.6, label=s["adapter"])
        if series:
            c.ax.legend(loc="upper right")
        return c.svg()


def latent_scatter_figure(panel: dict[str, Any]) -> Markup:
    """Encoder means of test inputs (first two latent dimensions), coloured by class (first 10 in the legend)."""
    z1, z2 = _arr(panel["z1"]), _arr(panel["z2"])
    labels = list(panel.get("labels") or [])
    classes = sorted({int(v) for v in labels if v is not None})
    lab = np.array([np.nan if v is None else float(v) for v in labels]) if labels else np.full(z1.shape, np.nan)
    with _Canvas(340, 320, title="latent means (first two dims)", xlabel="z₁", ylabel="z₂") as c:
        style = {"marker": "o", "ls": "none", "ms": 4.4, "mec": "none"}
        unlabelled = ~np.isfinite(lab)
        if unlabelled.any():
            c.ax.plot(z1[unlabelled], z2[unlabelled], mfc=to_rgba(MUTED, 0.75), **style)
        for i, k in enumerate(classes):
            m = lab == k
            c.ax.plot(z1[m], z2[m], mfc=to_rgba(PALETTE[i % len(PALETTE)], 0.75),
                      label=f"class {k}" if i < 10 else None, **style)
        c.ax.set_xlim(*_data_range(z1))
        c.ax.set_ylim(*_data_range(z2))
        if classes:
            c.ax.legend(loc="upper right")
        return c.svg()


def manifold_figure(panel: dict[str, Any]) -> Markup:
    """Decoded images on a grid of latent points, tiled into one grey image (no axes)."""
    rows, cols = panel["rows"], panel["cols"]
    h, w = panel["shape"]
    size = min(max(2, 160 // max(h, w)) * max(h, w) * max(rows, cols), 320)
    pix = np.asarray(panel["pixels"], dtype=np.float64).reshape(rows, cols, h, w)
    img = pix.transpose(0, 2, 1, 3).reshape(rows * h, cols * w)
    with _Canvas(size + 8, size + 30, title="manifold (decoded latent grid)", margin=(26, 4, 4, 4),
                 axes=False) as c:
        c.ax.imshow(np.nan_to_num(img, nan=0.0), cmap=GREY_CMAP, vmin=0, vmax=1, aspect="auto",
                    extent=(0, cols, rows, 0))
        return c.svg()


def recon_figure(panel: dict[str, Any]) -> Markup:
    """Rows of examples: input, reconstruction mean, per-pixel std (viridis heat map, shared scale)."""
    h, w = panel["shape"]
    inputs = np.asarray(panel["inputs"], dtype=np.float64).reshape(-1, h, w)
    means = np.asarray(panel["recon_mean"], dtype=np.float64).reshape(-1, h, w)
    stds = np.asarray(panel["recon_std"], dtype=np.float64).reshape(-1, h, w) if panel.get("recon_std") else None
    n = len(inputs)
    cols = 3 if stds is not None else 2
    cell, gap = 48, 6
    vmax = _max(stds, 1.0) if stds is not None else 1.0
    vmax = vmax if vmax > 0 else 1.0
    labels = panel.get("labels") or []
    with _Canvas(cols * (cell + gap) + 70, n * (cell + gap) + 58, title="reconstructions",
                 margin=(38, 4, 20, 66), axes=False) as c:
        ax = c.ax
        muted = {"textcoords": "offset points", "fontsize": 10, "color": MUTED, "annotation_clip": False}
        for j, head in enumerate(["input", "mean", "std"][:cols]):
            ax.annotate(head, (j * (cell + gap) + cell / 2, 0), xytext=(0, 4), ha="center", va="bottom", **muted)
        for i in range(n):
            y0 = i * (cell + gap)
            panels = [(inputs[i], GREY_CMAP, 1.0), (means[i], GREY_CMAP, 1.0)]
            if stds is not None:
                panels.append((stds[i], HEAT_CMAP, vmax))
            for j, (img, cmap, top) in enumerate(panels):
                x0 = j * (cell + gap)
                ax.imshow(np.nan_to_num(img, nan=0.0), cmap=cmap, vmin=0, vmax=top, aspect="auto",
                          extent=(x0, x0 + cell, y0 + cell, y0))
            if i < len(labels) and labels[i] is not None:
                ax.annotate(f"class {labels[i]}", (0, y0 + cell / 2), xytext=(-6, 0), ha="right", va="center",
                            **muted)
        if stds is not None:
            ax.annotate(f"std colour scale 0–{format_compact(vmax)} ({HEAT_CMAP})",
                        (cols * (cell + gap) - gap, n * (cell + gap)), xytext=(0, -3), ha="right", va="top",
                        **{**muted, "fontsize": 9})
        ax.set_xlim(0, cols * (cell + gap))
        ax.set_ylim(n * (cell + gap), 0)
        return c.svg()

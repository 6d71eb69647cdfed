"""Inline SVG figures built by hand from the report's plain data dicts.

A tiny plotting helper (:class:`Plot`: linear/log axes, lines, bands, points, bars,
shaded spans, a legend) plus one function per figure. Every figure function takes the
dict :mod:`uqbench.report.data` built and returns :class:`markupsafe.Markup`: the SVG is
trusted markup because every piece of text placed in it (adapter, dataset and class names,
titles) goes through :func:`markupsafe.escape` here, and everything else is a number we
format ourselves. Images (autoencoder inputs, reconstructions) are embedded as PNG data
URIs encoded with zlib, no imaging library needed.
"""

from __future__ import annotations

import base64
import itertools
import math
import struct
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from markupsafe import Markup, escape

__all__ = [
    "PALETTE",
    "Plot",
    "adapter_colors",
    "calibration_figure",
    "fmt_number",
    "gradvar_figure",
    "latent_scatter_figure",
    "manifold_figure",
    "ood_hist_figure",
    "png_data_uri",
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
CLASS_PALETTE = PALETTE
INK = "#222"
MUTED = "#666"
GRID = "#e6e6e6"
REGION_COLORS = {"gap": "#f6c85f", "outside": "#9dc3e6"}

# Unique ids (clip paths) within one page.
_ids = itertools.count()


def adapter_colors(names: Iterable[str]) -> dict[str, str]:
    """One fixed colour per adapter, in the given order (palette first, then golden-angle hues)."""
    out: dict[str, str] = {}
    for i, name in enumerate(dict.fromkeys(names)):
        if i < len(PALETTE):
            out[name] = PALETTE[i]
        else:
            hue = (i * 137.508) % 360
            out[name] = f"hsl({hue:.0f},55%,45%)"
    return out


def fmt_number(v: Any, digits: int = 3) -> str:
    """Compact human formatting: 3 significant digits, scientific when very small or large."""
    if v is None:
        return "–"
    try:
        x = float(v)
    except (TypeError, ValueError):
        return str(v)
    if not math.isfinite(x):
        return "–" if math.isnan(x) else ("∞" if x > 0 else "−∞")
    if x == 0:
        return "0"
    a = abs(x)
    if a >= 1e5 or a < 1e-3:
        return f"{x:.{max(digits - 1, 1)}e}".replace("e-0", "e-").replace("e+0", "e").replace("e+", "e")
    s = f"{x:.{digits}g}"
    if "e" in s:  # e.g. 1.23e+03 for 3 digits of 1234
        s = f"{x:.0f}"
    return s


def tick_label(t: float) -> str:
    """Shortest plain label of a tick value (``0.0005``, ``2.5``, ``1e+06`` -> ``1e6``)."""
    s = f"{t:.6g}"
    return s.replace("e-0", "e-").replace("e+0", "e").replace("e+", "e")


def _f(v: float) -> str:
    """A coordinate for SVG: one decimal is plenty at screen resolution."""
    return f"{v:.1f}"


def _esc(s: Any) -> str:
    return str(escape(str(s)))


# ---------------------------------------------------------------------------------------
# Axes


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering ``[lo, hi]`` (about ``n`` of them)."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = mag
    for m in (1, 2, 2.5, 5, 10):
        step = m * mag
        if (hi - lo) / step <= n:
            break
    start = math.ceil(lo / step - 1e-9) * step
    ticks = []
    t = start
    while t <= hi + step * 1e-9:
        ticks.append(0.0 if abs(t) < step * 1e-9 else t)
        t += step
    return ticks


def log_ticks(lo: float, hi: float) -> list[float]:
    """Decades covering ``[lo, hi]`` (plus 2 and 5 when the range spans under two decades)."""
    if not (lo > 0 and hi > 0) or hi < lo:
        return []
    a, b = math.floor(math.log10(lo) + 1e-9), math.ceil(math.log10(hi) - 1e-9)
    decades = [10.0**k for k in range(a, b + 1)]
    if b - a < 2:
        decades = sorted({d * m for d in decades for m in (1, 2, 5)})
    ticks = [t for t in decades if lo * (1 - 1e-9) <= t <= hi * (1 + 1e-9)]
    if len(ticks) < 3:  # under a decade: round linear ticks read better
        ticks = [t for t in nice_ticks(lo, hi, 4) if t > 0]
    if len(ticks) > 8:
        step = math.ceil(len(ticks) / 6)
        ticks = ticks[::step]
    return ticks


def padded_range(values: Iterable[float], *, log: bool = False, pad: float = 0.05,
                 include: Sequence[float] = ()) -> tuple[float, float]:
    """``(lo, hi)`` of the finite values (positive ones on a log axis), padded a little."""
    v = np.asarray([*list(values), *include], dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if log:
        v = v[v > 0]
    if v.size == 0:
        return (0.1, 10.0) if log else (0.0, 1.0)
    lo, hi = float(v.min()), float(v.max())
    if log:
        llo, lhi = math.log10(lo), math.log10(hi)
        if lhi - llo < 1e-12:
            llo, lhi = llo - 0.5, lhi + 0.5
        span = lhi - llo
        return 10 ** (llo - pad * span), 10 ** (lhi + pad * span)
    if hi - lo < 1e-12 * max(1.0, abs(lo)):
        d = 0.5 * max(abs(lo), 1.0)
        return lo - d, hi + d
    span = hi - lo
    return lo - pad * span, hi + pad * span


class Plot:
    """One set of axes rendered to an SVG string.

    Parameters
    ----------
    width, height : pixel size of the whole figure (the SVG scales down with the page).
    xlim, ylim : data ranges of the axes.
    xlog, ylog : base-10 log axes (non-positive values are dropped).
    title, xlabel, ylabel : text (escaped).
    """

    def __init__(self, *, width: int = 320, height: int = 240, xlim: tuple[float, float] = (0, 1),
                 ylim: tuple[float, float] = (0, 1), xlog: bool = False, ylog: bool = False,
                 title: str = "", xlabel: str = "", ylabel: str = "",
                 margin: tuple[int, int, int, int] = (26, 12, 40, 54),
                 xticks: Sequence[float] | None = None, yticks: Sequence[float] | None = None,
                 xtick_labels: Sequence[str] | None = None, show_axes: bool = True) -> None:
        self.width, self.height = width, height
        self.top, self.right, self.bottom, self.left = margin
        self.xlog, self.ylog = xlog, ylog
        self.xlim, self.ylim = xlim, ylim
        self.title, self.xlabel, self.ylabel = title, xlabel, ylabel
        self.xticks = list(xticks) if xticks is not None else None
        self.yticks = list(yticks) if yticks is not None else None
        self.xtick_labels = list(xtick_labels) if xtick_labels is not None else None
        self.show_axes = show_axes
        self.body: list[str] = []      # clipped to the plot area
        self.overlay: list[str] = []   # drawn on top, unclipped
        self.legend_entries: list[tuple[str, str, str]] = []
        self.clip_id = f"uqc{next(_ids)}"

    # coordinate transforms -------------------------------------------------------------
    @property
    def pw(self) -> float:
        return self.width - self.left - self.right

    @property
    def ph(self) -> float:
        return self.height - self.top - self.bottom

    def _t(self, v: np.ndarray, lim: tuple[float, float], log: bool) -> np.ndarray:
        v = np.asarray(v, dtype=np.float64)
        lo, hi = lim
        if log:
            with np.errstate(divide="ignore", invalid="ignore"):
                v = np.where(v > 0, np.log10(np.where(v > 0, v, 1.0)), np.nan)
            lo, hi = math.log10(lo), math.log10(hi)
        return (v - lo) / (hi - lo)

    def sx(self, x: Any) -> np.ndarray:
        return self.left + self._t(x, self.xlim, self.xlog) * self.pw

    def sy(self, y: Any) -> np.ndarray:
        return self.top + (1.0 - self._t(y, self.ylim, self.ylog)) * self.ph

    # marks -----------------------------------------------------------------------------
    def line(self, x: Any, y: Any, *, color: str, width: float = 1.6, dash: str | None = None,
             opacity: float = 1.0, label: str | None = None) -> Plot:
        """A polyline; breaks at non-finite points."""
        px, py = self.sx(x), self.sy(y)
        ok = np.isfinite(px) & np.isfinite(py)
        attrs = f'fill="none" stroke="{color}" stroke-width="{width}" stroke-linejoin="round"'
        if dash:
            attrs += f' stroke-dasharray="{dash}"'
        if opacity < 1:
            attrs += f' stroke-opacity="{opacity}"'
        for seg in _runs(ok):
            if len(seg) < 2:
                continue
            pts = " ".join(f"{_f(px[i])},{_f(py[i])}" for i in seg)
            self.body.append(f'<polyline points="{pts}" {attrs}/>')
        if label is not None:
            self.legend_entries.append((label, color, "dash" if dash else "line"))
        return self

    def band(self, x: Any, lo: Any, hi: Any, *, color: str, opacity: float = 0.2,
             label: str | None = None) -> Plot:
        """A filled region between two curves; breaks at non-finite points."""
        px, plo, phi = self.sx(x), self.sy(lo), self.sy(hi)
        ok = np.isfinite(px) & np.isfinite(plo) & np.isfinite(phi)
        for seg in _runs(ok):
            if len(seg) < 2:
                continue
            upper = [f"{_f(px[i])},{_f(phi[i])}" for i in seg]
            lower = [f"{_f(px[i])},{_f(plo[i])}" for i in reversed(seg)]
            self.body.append(
                f'<polygon points="{" ".join(upper + lower)}" fill="{color}" fill-opacity="{opacity}" stroke="none"/>'
            )
        if label is not None:
            self.legend_entries.append((label, f"{color}|{opacity}", "band"))
        return self

    def points(self, x: Any, y: Any, *, color: str | Sequence[str], r: float | Sequence[float] = 2.5,
               opacity: float = 1.0, hollow: bool | Sequence[bool] = False,
               titles: Sequence[str] | None = None, label: str | None = None) -> Plot:
        px, py = self.sx(x), self.sy(y)
        n = len(px)
        colors = [color] * n if isinstance(color, str) else list(color)
        radii = [r] * n if isinstance(r, int | float) else list(r)
        hollows = [hollow] * n if isinstance(hollow, bool) else list(hollow)
        out = []
        for i in range(n):
            if not (np.isfinite(px[i]) and np.isfinite(py[i])):
                continue
            c = colors[i]
            style = (f'fill="white" stroke="{c}" stroke-width="1.8"' if hollows[i]
                     else f'fill="{c}" fill-opacity="{opacity}" stroke="none"')
            title = f"<title>{_esc(titles[i])}</title>" if titles else ""
            if title:
                out.append(f'<circle cx="{_f(px[i])}" cy="{_f(py[i])}" r="{radii[i]:.1f}" {style}>{title}</circle>')
            else:
                out.append(f'<circle cx="{_f(px[i])}" cy="{_f(py[i])}" r="{radii[i]:.1f}" {style}/>')
        self.body.append("".join(out))
        if label is not None:
            self.legend_entries.append((label, colors[0] if colors else INK, "point"))
        return self

    def bars(self, left: Any, right: Any, height: Any, *, color: str, opacity: float = 0.6,
             base: float = 0.0, label: str | None = None, stroke: str | None = None) -> Plot:
        x0, x1 = self.sx(left), self.sx(right)
        y1 = self.sy(height)
        y0 = float(self.sy(np.array([base]))[0]) if not self.ylog else self.top + self.ph
        out = []
        st = f' stroke="{stroke}" stroke-width="0.8"' if stroke else ""
        for a, b, h in zip(x0, x1, y1, strict=True):
            if not (np.isfinite(a) and np.isfinite(b) and np.isfinite(h)):
                continue
            top, bottom = min(h, y0), max(h, y0)
            out.append(
                f'<rect x="{_f(a)}" y="{_f(top)}" width="{_f(max(b - a, 0.5))}" height="{_f(bottom - top)}" '
                f'fill="{color}" fill-opacity="{opacity}"{st}/>'
            )
        self.body.append("".join(out))
        if label is not None:
            self.legend_entries.append((label, f"{color}|{opacity}", "band"))
        return self

    def xspan(self, x0: float, x1: float, *, color: str, opacity: float = 0.18,
              label: str | None = None) -> Plot:
        """A vertical band over the full plot height (e.g. a shaded input region)."""
        a, b = (float(v) for v in self.sx(np.array([x0, x1])))
        if np.isfinite(a) and np.isfinite(b):
            lo, hi = min(a, b), max(a, b)
            self.body.append(
                f'<rect x="{_f(lo)}" y="{self.top}" width="{_f(hi - lo)}" height="{_f(self.ph)}" '
                f'fill="{color}" fill-opacity="{opacity}"/>'
            )
        if label is not None:
            self.legend_entries.append((label, f"{color}|{opacity}", "band"))
        return self

    def diagonal(self, *, label: str | None = "ideal") -> Plot:
        lo = max(self.xlim[0], self.ylim[0])
        hi = min(self.xlim[1], self.ylim[1])
        return self.line([lo, hi], [lo, hi], color="#888", width=1.2, dash="4 3", label=label)

    def text(self, x: float, y: float, s: str, *, color: str = INK, size: int = 11,
             anchor: str = "start", dx: float = 0, dy: float = 0, weight: str = "normal") -> Plot:
        px, py = float(self.sx(np.array([x]))[0]), float(self.sy(np.array([y]))[0])
        if np.isfinite(px) and np.isfinite(py):
            self.overlay.append(
                f'<text x="{_f(px + dx)}" y="{_f(py + dy)}" font-size="{size}" fill="{color}" '
                f'text-anchor="{anchor}" font-weight="{weight}">{_esc(s)}</text>'
            )
        return self

    def image(self, x0: float, y0: float, x1: float, y1: float, uri: str) -> Plot:
        """A raster image filling the data rectangle ``[x0, x1] × [y0, y1]``."""
        a, b = (float(v) for v in self.sx(np.array([x0, x1])))
        c, d = (float(v) for v in self.sy(np.array([y0, y1])))
        self.body.append(
            f'<image x="{_f(min(a, b))}" y="{_f(min(c, d))}" width="{_f(abs(b - a))}" height="{_f(abs(d - c))}" '
            f'preserveAspectRatio="none" style="image-rendering:pixelated" href="{uri}"/>'
        )
        return self

    def legend(self, entries: Sequence[tuple[str, str, str]] | None = None, *,
               where: str = "top-left") -> Plot:
        """Draw the legend inside the plot area (entries default to those labelled so far)."""
        entries = list(entries) if entries is not None else self.legend_entries
        if not entries:
            return self
        row_h, sw = 14, 16
        width = 26 + max(_text_width(e[0], 10) for e in entries)
        height = row_h * len(entries) + 6
        x = self.left + 6 if "left" in where else self.left + self.pw - width - 6
        y = self.top + 6 if "top" in where else self.top + self.ph - height - 6
        out = [f'<g class="legend"><rect x="{_f(x)}" y="{_f(y)}" width="{_f(width)}" height="{height}" '
               f'fill="white" fill-opacity="0.85" stroke="#ddd" rx="3"/>']
        for i, (label, color, kind) in enumerate(entries):
            cy = y + 3 + row_h * i + row_h / 2
            cx = x + 5
            if kind == "band":
                c, _, op = color.partition("|")
                out.append(f'<rect x="{_f(cx)}" y="{_f(cy - 5)}" width="{sw}" height="10" fill="{c}" '
                           f'fill-opacity="{op or 0.3}"/>')
            elif kind == "point":
                out.append(f'<circle cx="{_f(cx + sw / 2)}" cy="{_f(cy)}" r="3" fill="{color}"/>')
            else:
                dash = ' stroke-dasharray="4 3"' if kind == "dash" else ""
                out.append(f'<line x1="{_f(cx)}" y1="{_f(cy)}" x2="{_f(cx + sw)}" y2="{_f(cy)}" '
                           f'stroke="{color}" stroke-width="2"{dash}/>')
            out.append(f'<text x="{_f(cx + sw + 4)}" y="{_f(cy + 3.5)}" font-size="10" fill="{INK}">{_esc(label)}</text>')
        out.append("</g>")
        self.overlay.append("".join(out))
        return self

    # output ----------------------------------------------------------------------------
    def _axes(self) -> str:
        if not self.show_axes:
            return ""
        out = []
        x0, x1 = self.left, self.left + self.pw
        y0, y1 = self.top, self.top + self.ph
        xt = self.xticks if self.xticks is not None else (
            log_ticks(*self.xlim) if self.xlog else nice_ticks(*self.xlim, n=max(3, int(self.pw // 60))))
        yt = self.yticks if self.yticks is not None else (
            log_ticks(*self.ylim) if self.ylog else nice_ticks(*self.ylim, n=max(3, int(self.ph // 45))))
        for i, t in enumerate(xt):
            px = float(self.sx(np.array([t]))[0])
            if not (np.isfinite(px) and x0 - 0.5 <= px <= x1 + 0.5):
                continue
            label = self.xtick_labels[i] if self.xtick_labels else tick_label(t)
            out.append(f'<line x1="{_f(px)}" y1="{y0}" x2="{_f(px)}" y2="{_f(y1)}" stroke="{GRID}"/>')
            out.append(f'<text x="{_f(px)}" y="{_f(y1 + 13)}" font-size="10" fill="{MUTED}" text-anchor="middle">{_esc(label)}</text>')
        for t in yt:
            py = float(self.sy(np.array([t]))[0])
            if not (np.isfinite(py) and y0 - 0.5 <= py <= y1 + 0.5):
                continue
            out.append(f'<line x1="{x0}" y1="{_f(py)}" x2="{x1}" y2="{_f(py)}" stroke="{GRID}"/>')
            out.append(f'<text x="{x0 - 4}" y="{_f(py + 3.5)}" font-size="10" fill="{MUTED}" text-anchor="end">{_esc(tick_label(t))}</text>')
        out.append(f'<rect x="{x0}" y="{y0}" width="{_f(self.pw)}" height="{_f(self.ph)}" fill="none" stroke="#bbb"/>')
        if self.xlabel:
            out.append(f'<text x="{_f(x0 + self.pw / 2)}" y="{self.height - 6}" font-size="11" fill="{INK}" text-anchor="middle">{_esc(self.xlabel)}</text>')
        if self.ylabel:
            cy = y0 + self.ph / 2
            out.append(f'<text x="12" y="{_f(cy)}" font-size="11" fill="{INK}" text-anchor="middle" transform="rotate(-90 12 {_f(cy)})">{_esc(self.ylabel)}</text>')
        return "".join(out)

    def svg(self) -> Markup:
        title = ""
        if self.title:
            title = (f'<text x="{self.left}" y="16" font-size="12" font-weight="600" fill="{INK}">'
                     f"{_esc(_clip_text(self.title, self.width - self.left))}</text>")
        label = _esc(self.title or "figure")
        return Markup(
            f'<svg xmlns="http://www.w3.org/2000/svg" class="fig" role="img" aria-label="{label}" '
            f'width="{self.width}" height="{self.height}" viewBox="0 0 {self.width} {self.height}">'
            f"<title>{label}</title>"
            f'<defs><clipPath id="{self.clip_id}"><rect x="{self.left}" y="{self.top}" '
            f'width="{_f(self.pw)}" height="{_f(self.ph)}"/></clipPath></defs>'
            f"{self._axes()}"
            f'<g clip-path="url(#{self.clip_id})">{"".join(self.body)}</g>'
            f'{"".join(self.overlay)}{title}</svg>'
        )


def _runs(ok: np.ndarray) -> list[list[int]]:
    """Index runs where ``ok`` is True."""
    runs: list[list[int]] = []
    cur: list[int] = []
    for i, good in enumerate(ok):
        if good:
            cur.append(i)
        elif cur:
            runs.append(cur)
            cur = []
    if cur:
        runs.append(cur)
    return runs


def _text_width(s: str, size: int) -> float:
    return 0.58 * size * len(str(s))


def _clip_text(s: str, width: float, size: int = 12) -> str:
    max_chars = max(int(width / (0.6 * size)), 4)
    return s if len(s) <= max_chars else s[: max_chars - 1] + "…"


def _max(a: Any, default: float) -> float:
    """Largest finite value of ``a`` (``default`` when there is none); never warns."""
    v = np.asarray(a, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    return float(v.max()) if v.size else default


def _arr(v: Any) -> np.ndarray:
    """A list from the data dict (None for missing values) as float64 with NaN."""
    return np.asarray([np.nan if x is None else x for x in v], dtype=np.float64)


# ---------------------------------------------------------------------------------------
# PNG encoding for image panels


def png_data_uri(img: np.ndarray) -> str:
    """``data:image/png;base64,...`` for a ``[H, W]`` grey or ``[H, W, 3]`` RGB uint8 image."""
    a = np.asarray(img)
    if a.dtype != np.uint8:
        raise ValueError(f"png_data_uri needs uint8 pixels, got {a.dtype}")
    if a.ndim == 2:
        color_type, channels = 0, 1
    elif a.ndim == 3 and a.shape[2] == 3:
        color_type, channels = 2, 3
    else:
        raise ValueError(f"png_data_uri needs [H, W] or [H, W, 3], got shape {a.shape}")
    h, w = a.shape[:2]
    rows = a.reshape(h, w * channels)
    raw = b"".join(b"\x00" + rows[i].tobytes() for i in range(h))  # filter type 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


# Perceptually ordered ramp (viridis anchors) for uncertainty heat maps.
_RAMP = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float64)


def heat_rgb(v: np.ndarray, vmax: float) -> np.ndarray:
    """Map ``[H, W]`` values in ``[0, vmax]`` to ``[H, W, 3]`` uint8 colours."""
    t = np.clip(np.nan_to_num(np.asarray(v, dtype=np.float64) / (vmax if vmax > 0 else 1.0)), 0, 1)
    pos = t * (len(_RAMP) - 1)
    i = np.minimum(pos.astype(int), len(_RAMP) - 2)
    frac = (pos - i)[..., None]
    return np.round(_RAMP[i] * (1 - frac) + _RAMP[i + 1] * frac).astype(np.uint8)


def grey_u8(v: np.ndarray) -> np.ndarray:
    """Pixel intensities in ``[0, 1]`` as dark-on-white uint8 (ink is dark)."""
    return np.round(255 * (1 - np.clip(np.nan_to_num(np.asarray(v, dtype=np.float64)), 0, 1))).astype(np.uint8)


# ---------------------------------------------------------------------------------------
# Figures


def calibration_figure(panel: dict[str, Any], *, kind: str) -> Markup:
    """Reliability diagram (``kind="reliability"``) or coverage curve (``"coverage"``) of one adapter.

    Reliability: accuracy per confidence bin as bars (points at the bin's mean confidence,
    area by its share of points) and the share of points per bin as a grey strip at the
    bottom; bins without points are left out.
    """
    color = panel["color"]
    x, y = _arr(panel["x"]), _arr(panel["y"])
    if kind == "reliability":
        p = Plot(width=280, height=250, title=panel["adapter"], xlabel="confidence (top-label probability)",
                 ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
        count = np.nan_to_num(_arr(panel.get("count") or [1.0] * len(x)))
        share = count / count.sum() if count.sum() > 0 else np.zeros_like(count)
        edges = panel.get("edges")
        if edges and len(edges) == len(x) + 1:
            e = _arr(edges)
            keep = count > 0
            p.bars(e[:-1][keep], e[1:][keep], y[keep], color=color, opacity=0.35, stroke="white",
                   label="accuracy per bin")
            top = _max(share, 0.0)
            if top > 0:
                p.bars(e[:-1][keep], e[1:][keep], 0.2 * share[keep] / top, color="#555", opacity=0.45,
                       label="share of points")
        p.diagonal()
        radii = [2 + 5 * math.sqrt(v) for v in np.nan_to_num(share)]
        titles = [f"confidence {fmt_number(a)}, accuracy {fmt_number(b)}, {fmt_number(c)} points"
                  for a, b, c in zip(x, y, count, strict=True)]
        p.points(x, y, color=color, r=radii, titles=titles)
        p.legend(where="top-left")
    else:
        p = Plot(width=280, height=250, title=panel["adapter"], xlabel="nominal coverage",
                 ylabel="observed coverage", xlim=(0, 1), ylim=(0, 1))
        p.diagonal()
        p.line(x, y, color=color, width=1.8)
        p.points(x, y, color=color, r=2.5, label="observed")
        p.legend(where="top-left")
    return p.svg()


def toy_figure(panel: dict[str, Any], regions: Sequence[dict[str, Any]]) -> Markup:
    """Toy 1-D regression: data, mean, ±2σ total and epistemic bands, draws, shaded regions."""
    color = panel["color"]
    x = _arr(panel["x"])
    mean = _arr(panel["mean"])
    tot, epi = _arr(panel["total_sd"]), _arr(panel["epistemic_sd"])
    tx, ty = _arr(panel.get("train_x") or []), _arr(panel.get("train_y") or [])
    draws = [_arr(d) for d in panel.get("draws") or []]
    ys = [mean + 2 * tot, mean - 2 * tot, ty, *draws]
    ylo, yhi = padded_range(np.concatenate([v.ravel() for v in ys]) if ys else [0, 1])
    # Keep a wild extrapolation from squashing the data: clip to a generous multiple of the data range.
    if ty.size:
        dlo, dhi = padded_range(ty, pad=1.0)
        ylo, yhi = max(ylo, dlo), min(yhi, dhi)
    p = Plot(width=480, height=300, title=panel["adapter"] + f" (seed {panel['seed']})",
             xlabel="x (standardized input)", ylabel="y",
             xlim=padded_range(x, pad=0.0), ylim=(ylo, yhi))
    seen: set[str] = set()
    for r in regions:
        key = "gap" if "gap" in r["name"] else ("outside" if "outside" in r["name"] else None)
        if key is None:
            continue
        label = key if key not in seen else None
        seen.add(key)
        p.xspan(r["lo"], r["hi"], color=REGION_COLORS[key], opacity=0.22, label=f"{label} region" if label else None)
    p.band(x, mean - 2 * tot, mean + 2 * tot, color=color, opacity=0.16, label="±2σ total")
    p.band(x, mean - 2 * epi, mean + 2 * epi, color=color, opacity=0.38, label="±2σ epistemic")
    for i, d in enumerate(draws):
        p.line(x, d, color=color, width=1.0, opacity=0.9, label="function draws" if i == 0 else None)
    if tx.size:
        p.points(tx, ty, color="#333", r=1.6, opacity=0.45, label="training data")
    p.line(x, mean, color=INK, width=1.8, label="predictive mean")
    p.legend(where="top-left")
    return p.svg()


def ood_hist_figure(panel: dict[str, Any], *, ood_name: str) -> Markup:
    """Histograms of the epistemic score, in-distribution vs one OOD set, for one adapter."""
    if panel.get("constant"):
        p = Plot(width=280, height=220, title=panel["adapter"], show_axes=False, xlim=(0, 1), ylim=(0, 1))
        p.text(0.5, 0.55, "epistemic score is constant", anchor="middle", color=MUTED, size=12)
        p.text(0.5, 0.55, f"(= {fmt_number(panel.get('value'))} on both sets): nothing to separate",
               anchor="middle", dy=18, color=MUTED, size=11)
        return p.svg()
    edges = _arr(panel["edges"])
    cin, cood = _arr(panel["in_density"]), _arr(panel["ood_density"])
    log = bool(panel.get("log"))
    xlabel = "log10 epistemic score" if log else "epistemic score"
    p = Plot(width=280, height=220, title=panel["adapter"], xlabel=xlabel, ylabel="density",
             xlim=(float(edges[0]), float(edges[-1])), ylim=(0, _max([*cin, *cood], 1.0) * 1.1))
    p.bars(edges[:-1], edges[1:], cin, color="#4e79a7", opacity=0.5, label="in-distribution (test)")
    p.bars(edges[:-1], edges[1:], cood, color="#e15759", opacity=0.5, label=f"OOD: {ood_name}")
    p.legend(where="top-right")
    return p.svg()


def roc_figure(curves: Sequence[dict[str, Any]], *, ood_name: str) -> Markup:
    """ROC curves of the epistemic score (OOD = positive), one line per adapter."""
    p = Plot(width=300, height=280, title=f"ROC: test vs {ood_name}", xlabel="false positive rate",
             ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1))
    p.diagonal(label="chance")
    for c in curves:
        auc = c.get("auroc")
        p.line(_arr(c["fpr"]), _arr(c["tpr"]), color=c["color"], width=1.8,
               label=f"{c['adapter']} (AUROC {fmt_number(auc)})")
    p.legend(where="bottom-right")
    return p.svg()


def tradeoff_figure(panel: dict[str, Any]) -> Markup:
    """Each adapter placed by fit time (x, log), calibration error (y); marker size = epistemic ratio."""
    pts = panel["points"]
    xs = _arr([q["x"] for q in pts])
    ys = _arr([q["y"] for q in pts])
    ratios = _arr([q.get("ratio") for q in pts])
    xlim = padded_range(xs, log=True, pad=0.25)
    ylim = padded_range(ys, pad=0.25, include=[0.0])
    p = Plot(width=460, height=320, title=panel["dataset"], xlabel="fit wall time, s (log) — faster ←",
             ylabel=panel["y_label"] + " — better ↓", xlim=xlim, ylim=ylim, xlog=True,
             margin=(26, 16, 40, 58))
    finite = ratios[np.isfinite(ratios) & (ratios > 0)]
    top = float(np.log1p(finite.max())) if finite.size else 1.0
    radii, hollow, titles = [], [], []
    for q, rr in zip(pts, ratios, strict=True):
        if np.isfinite(rr) and rr > 0:
            radii.append(5 + 13 * math.sqrt(math.log1p(rr) / top if top > 0 else 0))
            hollow.append(False)
        else:
            radii.append(5)
            hollow.append(True)
        titles.append(f"{q['adapter']}: fit {fmt_number(q['x'])} s, {panel['y_label']} "
                      f"{fmt_number(q['y'])}, epistemic ratio {fmt_number(rr)}")
    p.points(xs, ys, color=[q["color"] for q in pts], r=radii, opacity=0.7, hollow=hollow, titles=titles)
    for q, rr, rad in zip(pts, ratios, radii, strict=True):
        label = f"{q['adapter']} (ratio {fmt_number(rr)})" if np.isfinite(rr) else f"{q['adapter']} (ratio n/a)"
        right_half = float(p.sx(np.array([q["x"]]))[0]) > p.left + 0.55 * p.pw
        p.text(q["x"], q["y"], label, dx=-(rad + 3) if right_half else rad + 3, dy=4, size=10,
               color=q["color"], weight="600", anchor="end" if right_half else "start")
    return p.svg()


def gradvar_figure(panel: dict[str, Any], *, dataset: str) -> Markup:
    """Gradient variance vs batch size (log-log) for one layer, one line per adapter."""
    series = panel["series"]
    bs = np.concatenate([_arr(s["b"]) for s in series]) if series else np.array([1.0])
    vs = np.concatenate([_arr(s["v"]) for s in series]) if series else np.array([1.0])
    ticks = sorted({float(b) for b in bs if np.isfinite(b) and b > 0})
    p = Plot(width=340, height=260, title=f"{dataset}: {panel['layer']} layer", xlabel="batch size",
             ylabel="gradient variance", xlim=padded_range(bs, log=True, pad=0.08),
             ylim=padded_range(vs, log=True, pad=0.1), xlog=True, ylog=True, xticks=ticks)
    for s in series:
        b, v = _arr(s["b"]), _arr(s["v"])
        p.line(b, v, color=s["color"], width=1.8, label=s["adapter"])
        p.points(b, v, color=s["color"], r=2.8)
    p.legend(where="top-right")
    return p.svg()


def latent_scatter_figure(panel: dict[str, Any]) -> Markup:
    z1, z2 = _arr(panel["z1"]), _arr(panel["z2"])
    labels = panel.get("labels") or []
    classes = sorted({int(c) for c in labels if c is not None})
    cmap = {c: CLASS_PALETTE[i % len(CLASS_PALETTE)] for i, c in enumerate(classes)}
    colors = [cmap.get(int(c), MUTED) if c is not None else MUTED for c in labels] or MUTED
    p = Plot(width=340, height=320, title="latent means (first two dims)", xlabel="z₁", ylabel="z₂",
             xlim=padded_range(z1), ylim=padded_range(z2))
    p.points(z1, z2, color=colors, r=2.2, opacity=0.75)
    p.legend([(f"class {c}", cmap[c], "point") for c in classes[:10]], where="top-right")
    return p.svg()


def manifold_figure(panel: dict[str, Any]) -> Markup:
    """Decoded images on a grid of latent points, tiled (no axes)."""
    rows, cols = panel["rows"], panel["cols"]
    h, w = panel["shape"]
    tile = max(2, 160 // max(h, w)) * 1  # pixels per image pixel
    size = tile * max(h, w) * max(rows, cols)
    size = min(size, 320)
    p = Plot(width=size + 8, height=size + 30, title="manifold (decoded latent grid)",
             margin=(26, 4, 4, 4), xlim=(0, cols), ylim=(0, rows), show_axes=False)
    img = np.ones((rows * h, cols * w))
    pix = np.asarray(panel["pixels"], dtype=np.float64).reshape(rows, cols, h, w)
    for r in range(rows):
        for c in range(cols):
            img[r * h:(r + 1) * h, c * w:(c + 1) * w] = pix[r, c]
    p.image(0, rows, cols, 0, png_data_uri(grey_u8(img)))
    return p.svg()


def recon_figure(panel: dict[str, Any]) -> Markup:
    """Rows of examples: input, reconstruction mean, per-pixel std (heat map, shared scale)."""
    h, w = panel["shape"]
    inputs = np.asarray(panel["inputs"], dtype=np.float64).reshape(-1, h, w)
    means = np.asarray(panel["recon_mean"], dtype=np.float64).reshape(-1, h, w)
    stds = np.asarray(panel["recon_std"], dtype=np.float64).reshape(-1, h, w) if panel.get("recon_std") else None
    n = len(inputs)
    cols = 3 if stds is not None else 2
    cell = 48
    p = Plot(width=cols * (cell + 6) + 70, height=n * (cell + 6) + 58, title="reconstructions",
             margin=(38, 4, 20, 66), xlim=(0, cols * (cell + 6)), ylim=(n * (cell + 6), 0), show_axes=False)
    headers = ["input", "mean", "std" if stds is not None else ""]
    vmax = _max(stds, 1.0) if stds is not None else 1.0
    for j, head in enumerate(headers[:cols]):
        p.text(j * (cell + 6) + cell / 2, 0, head, anchor="middle", dy=-4, size=10, color=MUTED)
    for i in range(n):
        y0 = i * (cell + 6)
        p.image(0, y0, cell, y0 + cell, png_data_uri(grey_u8(inputs[i])))
        p.image(cell + 6, y0, 2 * cell + 6, y0 + cell, png_data_uri(grey_u8(means[i])))
        if stds is not None:
            p.image(2 * (cell + 6), y0, 3 * cell + 12, y0 + cell, png_data_uri(heat_rgb(stds[i], vmax)))
        if panel.get("labels") and panel["labels"][i] is not None:
            p.text(0, y0 + cell / 2, f"class {panel['labels'][i]}", anchor="end", dx=-6, dy=4, size=10, color=MUTED)
    if stds is not None:
        p.text(cols * (cell + 6), n * (cell + 6), f"std colour scale 0–{fmt_number(vmax)}", anchor="end",
               dy=12, size=9, color=MUTED)
    return p.svg()

"""The one place where numbers and tables of a finished run become text.

Every table writer of :mod:`uqbench.results` (the end-of-run summary, paper and fidelity
tables, the compare gate) and the HTML report format through these functions, so that a
number reads the same everywhere: :func:`format_number` (``N`` significant digits, ``—``
for a missing value), :func:`format_compact` (the report's cells: scientific notation far
from 1), :func:`format_mean_std` and :func:`format_mean_se` (a summary over seeds),
:func:`format_p` (a p-value), :func:`markdown_table` / :func:`markdown_escape` (GitHub
tables) and :func:`split_order` (``test`` first, then the OOD splits by name).

Pure functions of their arguments; nothing here reads or writes a file.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "DASH",
    "format_compact",
    "format_mean_se",
    "format_mean_std",
    "format_number",
    "format_p",
    "markdown_escape",
    "markdown_table",
    "split_order",
]

DASH = "—"  # a value that is missing or undefined (NaN) in a text or markdown table


def format_number(value: float | None, digits: int = 3) -> str:
    """``value`` to ``digits`` significant digits (``f"{x:.3g}"``); ``—`` for None or NaN, ``inf``/``-inf`` as such."""
    if value is None:
        return DASH
    x = float(value)
    if math.isnan(x):
        return DASH
    if math.isinf(x):
        return str(x)
    return f"{x:.{digits}g}"


def format_compact(value: Any, digits: int = 3, *, missing: str = "–") -> str:
    """A report cell: ``digits`` significant digits, scientific below 1e-3 or from 1e5 on.

    ``missing`` for None or NaN, ``∞``/``−∞`` for infinities, ``str(value)`` for what is not
    a number. Scientific exponents are short (``1.2e-4``, ``3.4e6``).
    """
    if value is None:
        return missing
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(x):
        return missing if math.isnan(x) else ("∞" if x > 0 else "−∞")
    if x == 0:
        return "0"
    a = abs(x)
    if a >= 1e5 or a < 1e-3:
        return f"{x:.{max(digits - 1, 1)}e}".replace("e-0", "e-").replace("e+0", "e").replace("e+", "e")
    s = f"{x:.{digits}g}"
    if "e" in s:  # e.g. 1.23e+03 for 3 digits of 1234
        s = f"{x:.0f}"
    return s


def format_mean_std(values: Sequence[float | None]) -> str:
    """``"mean ± std"`` of the finite values (sample std, ddof=1); the mean alone for one value, ``—`` for none."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return DASH
    mean = math.fsum(finite) / len(finite)
    if len(finite) == 1:
        return format_number(mean)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in finite) / (len(finite) - 1))
    return f"{format_number(mean)} ± {format_number(std)}"


def format_mean_se(mean: float | None, se: float | None) -> str:
    """``"mean ± s.e."`` with the s.e. to two significant digits and the mean to the same decimals.

    ``—`` for a non-finite mean; the mean alone (3 significant digits) when the s.e. is
    undefined (one seed); ``.3g`` / ``.2g`` for magnitudes outside [1e-4, 1e5) or an s.e.
    below 1e-8.
    """
    if mean is None or not math.isfinite(mean):
        return DASH
    if se is None or not math.isfinite(se):
        return f"{mean:.3g}"
    if se == 0:
        return f"{mean:.3g} ± 0"
    big = abs(mean) >= 1e5 or se >= 1e5
    tiny = (mean != 0 and abs(mean) < 1e-4) or se < 1e-8
    if big or tiny:
        return f"{mean:.3g} ± {se:.2g}"
    decimals = max(0, 1 - math.floor(math.log10(se)))
    return f"{mean:.{decimals}f} ± {se:.{decimals}f}"


def format_p(p: float, sep: str = "") -> str:
    """A p-value: ``<0.001``, else three decimals after ``sep`` (e.g. ``"="``); ``—`` when undefined."""
    if not math.isfinite(p):
        return DASH
    return "<0.001" if p < 0.001 else f"{sep}{p:.3f}"


def markdown_escape(text: Any) -> str:
    """``text`` safe inside one markdown table cell: pipes escaped, newlines made spaces."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(
    header: Sequence[str], rows: Iterable[Sequence[Any]], *, n_labels: int = 1, align: Sequence[str] | None = None
) -> str:
    """A GitHub-flavoured markdown table; every cell escaped with :func:`markdown_escape`.

    Alignment: the first ``n_labels`` columns left, the rest right; or ``align``, one
    markdown marker per column (``"---"``, ``":---"``, ``"---:"``).
    """
    markers = list(align) if align is not None else [":---"] * n_labels + ["---:"] * (len(header) - n_labels)
    if len(markers) != len(header):
        raise ValueError(f"align has {len(markers)} entries for {len(header)} columns")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(markers) + "|"]
    lines += ["| " + " | ".join(markdown_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def split_order(split: str) -> tuple[int, str]:
    """Sort key of a split name: ``test`` first, then the others (``ood:<name>``) by name."""
    return (0 if split == "test" else 1, split)

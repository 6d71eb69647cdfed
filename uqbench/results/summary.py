"""The end-of-run summary: one table per dataset, then failures and skipped cells.

Each table has one row per adapter and the key metrics of the dataset's task as
``mean ± std`` over seeds (sample standard deviation, ddof=1; std omitted for one seed),
computed over the seeds whose cell succeeded. A metric that is undefined for every such
seed (NaN by definition, e.g. ``epistemic_ratio`` of a deterministic net) shows as "—".
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from uqbench.results.formatting import format_mean_std, format_number

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console, RenderableType

# (split, metric, column header); "ood:*" expands to one column per OOD set.
KEY_METRICS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "classification": (
        ("test", "accuracy_score", "accuracy"),
        ("test", "nll_loss", "NLL"),
        ("test", "ece_error", "ECE"),
        ("ood:*", "epistemic_ratio", "epi. ratio {ood}"),
    ),
    "regression": (
        ("test", "rmse_error", "RMSE"),
        ("test", "nll_loss", "NLL"),
        ("test", "crps_loss", "CRPS"),
        ("test", "calibration_error", "cal. error"),
        ("ood:*", "epistemic_ratio", "epi. ratio {ood}"),
    ),
    "reconstruction": (
        ("test", "elbo_score", "ELBO"),
        ("test", "log_px_iwae_score", "log p(x) IWAE"),
        ("test", "latent_knn_accuracy_score", "latent k-NN acc."),
        ("ood:*", "auroc_neg_elbo", "AUROC -ELBO {ood}"),
        ("ood:*", "epistemic_ratio", "epi. ratio {ood}"),
    ),
}
FIT_COLUMN = ("fit", "fit_wall_seconds", "fit s")


def _ordered(values: Sequence[str], preferred: Sequence[str] | None) -> list[str]:
    seen = list(dict.fromkeys(values))
    if not preferred:
        return seen
    return [v for v in preferred if v in seen] + [v for v in seen if v not in preferred]


def dataset_table(
    results: pd.DataFrame,
    cells: Mapping[str, Mapping[str, Any]],
    dataset: str,
    *,
    mode: str | None = None,
    adapters: Sequence[str] | None = None,
) -> tuple[list[str], list[list[str]]]:
    """Header and rows (strings) of the summary table of ``dataset``.

    Rows cover the adapters with at least one applicable cell on ``dataset`` run as task
    ``mode`` (default: the dataset's task; autoencoders run image datasets as
    "reconstruction" and get their own table); ``seeds ok`` counts successful seeds.
    """
    records = [r for r in cells.values() if r["dataset"] == dataset and r["status"] != "skipped"]
    mode = mode or next((r["task"] for r in records), None)
    records = [r for r in records if r.get("mode", r["task"]) == mode]
    spec = KEY_METRICS.get(mode or "", ())
    names = {r["adapter"] for r in records}
    df = results[
        (results["dataset"] == dataset) & (results["status"] == "ok") & results["adapter"].isin(names)
    ]
    ood_splits = sorted(s for s in df["split"].unique() if s.startswith("ood:"))
    columns: list[tuple[str, str, str]] = []
    for split, metric, header in spec:
        if split == "ood:*":
            columns += [(s, metric, header.format(ood=s[4:])) for s in ood_splits]
        else:
            columns.append((split, metric, header))
    columns.append(FIT_COLUMN)
    header_row = ["adapter", "seeds ok", *(h for _, _, h in columns)]
    rows = []
    for adapter in _ordered([r["adapter"] for r in records], adapters):
        mine = [r for r in records if r["adapter"] == adapter]
        n_ok = sum(r["status"] == "ok" for r in mine)
        sub = df[df["adapter"] == adapter]
        row = [adapter, f"{n_ok}/{len(mine)}"]
        for split, metric, _ in columns:
            vals = sub.loc[(sub["split"] == split) & (sub["metric"] == metric), "value"]
            row.append(format_mean_std(vals.tolist()))
        rows.append(row)
    return header_row, rows


def failure_lines(cells: Mapping[str, Mapping[str, Any]]) -> list[str]:
    return [
        f"{r['adapter']} / {r['dataset']} / seed {r['seed']} in {r['stage']}: {r['reason']}"
        for r in cells.values()
        if r["status"] == "failed"
    ]


def not_applicable_lines(cells: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One line per (adapter, dataset) pair that was skipped, seeds collapsed."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in cells.values():
        if r["status"] == "skipped":
            groups.setdefault((r["adapter"], r["dataset"]), []).append(r)
    lines = []
    for (adapter, dataset), rs in groups.items():
        reason = rs[0]["reason"].removeprefix("not applicable: ")
        lines.append(f"{adapter} on {dataset}: {reason}")
    return lines


def renderables(
    results: pd.DataFrame,
    cells: Mapping[str, Mapping[str, Any]],
    *,
    datasets: Sequence[str] | None = None,
    adapters: Sequence[str] | None = None,
) -> list[RenderableType]:
    """The summary as rich renderables: tables, then failures and not-applicable cells."""
    from rich.text import Text

    out: list[RenderableType] = []
    applicable = [r for r in cells.values() if r["status"] != "skipped"]
    for dataset in _ordered([r["dataset"] for r in cells.values()], datasets):
        mine = [r for r in applicable if r["dataset"] == dataset]
        # The dataset's own task first, then other ways of using it (autoencoders).
        modes = sorted(dict.fromkeys(r.get("mode", r["task"]) for r in mine), key=lambda m: m != mine[0]["task"])
        for mode in modes:
            header, rows = dataset_table(results, cells, dataset, mode=mode, adapters=adapters)
            if rows:
                out.append(_table(f"{dataset} ({mode}): mean ± std over seeds", header, rows))
    na = not_applicable_lines(cells)
    if na:
        out.append(Text("not applicable (not run, not failures):\n" + "\n".join(f"  {line}" for line in na)))
    failures = failure_lines(cells)
    if failures:
        body = "\n".join(f"  {line}" for line in failures)
        out.append(Text(f"{len(failures)} failed cell(s):\n{body}", style="red"))
    else:
        out.append(Text("no failed cells", style="green"))
    return out


PARITY_METRICS = {
    "accuracy_score", "nll_loss", "ece_error", "rmse_error", "crps_loss", "calibration_error",
    "elbo_score", "epistemic_ratio", "n_parameters",
}


def parity_renderable(table: pd.DataFrame) -> RenderableType:
    """Key rows of :func:`uqbench.results.parity.parity_table` as one rich table.

    Quality: torch and TFP means and the paired 95% interval of torch - TFP (``*`` when it
    excludes 0); speed: the median torch/TFP time ratio (below 1: TFP is slower).
    """
    rows = []
    for r in table.itertuples(index=False):
        if r.kind == "speed":
            cell = f"ratio {format_number(r.ratio)}"
        elif r.metric in PARITY_METRICS and (
            r.split in ("test", "fit") or (r.split.startswith("ood:") and r.metric == "epistemic_ratio")
        ):
            flag = " *" if r.differs else ""
            cell = f"[{format_number(r.ci_low)}, {format_number(r.ci_high)}]{flag}"
        else:
            continue
        rows.append([
            f"{r.torch} / {r.tfp}", r.dataset, r.split, r.metric,
            format_number(r.torch_mean), format_number(r.tfp_mean), cell,
        ])
    header = ["pair", "dataset", "split", "metric", "torch", "TFP", "torch - TFP 95% CI / time ratio"]
    return _table("PyTorch vs TFP parity (mean over seeds; * = interval excludes 0)", header, rows)


def _table(title: str, header: list[str], rows: list[list[str]]) -> RenderableType:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for i, h in enumerate(header):
        table.add_column(h, justify="left" if i == 0 else "right", no_wrap=i == 0)
    for row in rows:
        table.add_row(*row)
    return table


def print_summary(console: Console, results: pd.DataFrame, cells: Mapping[str, Mapping[str, Any]], **kwargs: Any) -> None:
    for r in renderables(results, cells, **kwargs):
        console.print(r)
        console.print()


def summary_text(results: pd.DataFrame, cells: Mapping[str, Mapping[str, Any]], *, width: int = 220, **kwargs: Any) -> str:
    """The summary as plain text (no colour codes), for ``summary.txt``."""
    from rich.console import Console

    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system=None, force_terminal=False, force_jupyter=False)
    print_summary(console, results, cells, **kwargs)
    return buf.getvalue()

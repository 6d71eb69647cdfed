"""Published UCI results to set a run's numbers beside, with their sources.

Only tables whose figures we could check against their source are here. Each entry is
the mean and the standard deviation over the published splits, as the source prints
them; :func:`published_comparison` turns the sd into a standard error (sd / √n).

::

    published_comparison(paper_stats(results))   # DataFrame: ours vs published per (dataset, metric)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["GAL2016_DROPOUT", "LAKSHMINARAYANAN2017_ENSEMBLE", "PUBLISHED", "PublishedTable", "published_comparison"]


@dataclass(frozen=True)
class PublishedTable:
    """One method's published UCI table.

    Attributes
    ----------
    method : the uqbench adapter it is compared with, e.g. ``"mc-dropout"``.
    source : citation and where the figures were read.
    protocol : how the published numbers were obtained, including how it differs from ours.
    n_splits : splits the published mean and sd are over (for sd -> s.e.).
    values : dataset -> paper-table block label (``"RMSE"``, ``"test LL"``) -> (mean, sd).
    """

    method: str
    source: str
    protocol: str
    n_splits: int
    values: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)


# Gal & Ghahramani (2016), MC dropout, one hidden layer of 50 units, 40 epochs: the
# "original" columns of the table in github.com/yaringal/DropoutUncertaintyExps
# (readme.md), which prints mean ± sd over the 20 splits; the paper's Table 1 prints the
# same means with s.e. = sd / √20 (e.g. Boston 2.97 ± 0.19 = 0.85 / √20).
GAL2016_DROPOUT = PublishedTable(
    method="mc-dropout",
    source="Gal & Ghahramani (2016), Table 1; mean ± sd from yaringal/DropoutUncertaintyExps readme.md",
    protocol=(
        "dropout rate and precision tau chosen per split by Bayesian optimisation on a "
        "validation set (30 trials); uqbench fixes the rate and learns a homoscedastic noise"
    ),
    n_splits=20,
    values={
        "uci-boston": {"RMSE": (2.97, 0.85), "test LL": (-2.46, 0.25)},
        "uci-concrete": {"RMSE": (5.23, 0.53), "test LL": (-3.04, 0.09)},
        "uci-energy": {"RMSE": (1.66, 0.19), "test LL": (-1.99, 0.09)},
        "uci-kin8nm": {"RMSE": (0.10, 0.00), "test LL": (0.95, 0.03)},
        "uci-naval": {"RMSE": (0.01, 0.00), "test LL": (3.80, 0.05)},
        "uci-power": {"RMSE": (4.02, 0.18), "test LL": (-2.80, 0.05)},
        "uci-protein": {"RMSE": (4.36, 0.04), "test LL": (-2.89, 0.01)},
        "uci-wine": {"RMSE": (0.62, 0.04), "test LL": (-0.93, 0.06)},
        "uci-yacht": {"RMSE": (1.11, 0.38), "test LL": (-1.55, 0.12)},
    },
)

# Lakshminarayanan et al. (2017), deep ensembles (5 heteroscedastic networks, proper
# scoring rule, adversarial training), one hidden layer of 50 units, 40 epochs, Table 1
# (NLL there; test LL = -NLL here). Its ± is read as the sd over the 20 splits: the
# table prints MC dropout's sd column (Boston 2.97 ± 0.85) beside it on the same scale.
LAKSHMINARAYANAN2017_ENSEMBLE = PublishedTable(
    method="ensemble",
    source="Lakshminarayanan, Pritzel & Blundell (2017), Table 1",
    protocol=(
        "5 members trained with adversarial training; uqbench's ensemble has "
        "adversarial_eps = 0 by default, otherwise the same members and loss"
    ),
    n_splits=20,
    values={
        "uci-boston": {"RMSE": (3.28, 1.00), "test LL": (-2.41, 0.25)},
        "uci-concrete": {"RMSE": (6.03, 0.58), "test LL": (-3.06, 0.18)},
        "uci-energy": {"RMSE": (2.09, 0.29), "test LL": (-1.38, 0.22)},
        "uci-kin8nm": {"RMSE": (0.09, 0.00), "test LL": (1.20, 0.02)},
        "uci-naval": {"RMSE": (0.00, 0.00), "test LL": (5.63, 0.05)},
        "uci-power": {"RMSE": (4.11, 0.17), "test LL": (-2.79, 0.04)},
        "uci-protein": {"RMSE": (4.71, 0.06), "test LL": (-2.83, 0.02)},
        "uci-wine": {"RMSE": (0.64, 0.04), "test LL": (-0.94, 0.12)},
        "uci-yacht": {"RMSE": (1.58, 0.48), "test LL": (-1.18, 0.21)},
    },
)

PUBLISHED: tuple[PublishedTable, ...] = (GAL2016_DROPOUT, LAKSHMINARAYANAN2017_ENSEMBLE)

COMPARISON_COLUMNS = ("method", "dataset", "metric", "ours", "ours_se", "n", "published", "published_se",
                      "difference", "z")


def published_comparison(stats: pd.DataFrame, tables: tuple[PublishedTable, ...] = PUBLISHED) -> pd.DataFrame:
    """Our mean ± s.e. beside each published one, for the (method, dataset, block) both have.

    ``stats``: :func:`uqbench.results.paper.paper_stats` output (test split). ``z`` is the
    difference over ``sqrt(se_ours² + se_published²)``, treating the two as independent:
    both average the same fixed splits, so the real spread of the difference is smaller
    and ``|z|`` is conservative. The published values are rounded to 2 decimals, so ``z``
    is not meaningful where the published s.e. prints as 0 (kin8nm, naval RMSE): NaN there.
    """
    import pandas as pd

    rows = []
    test = stats[stats["split"] == "test"]
    for table in tables:
        mine = test[test["adapter"] == table.method]
        for r in mine.itertuples(index=False):
            published = table.values.get(r.dataset, {}).get(r.metric)
            if published is None:
                continue
            mean, sd = published
            se = sd / math.sqrt(table.n_splits)
            diff = float(r.mean) - mean
            spread = math.hypot(float(r.se), se) if math.isfinite(r.se) else math.nan
            z = diff / spread if se > 0 and spread > 0 else math.nan
            rows.append((table.method, r.dataset, r.metric, float(r.mean), float(r.se), int(r.n), mean, se, diff, z))
    return pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))

"""Rolling-origin monthly backtests: how a training recipe would have done, month by month.

Each of the latest ``backtest_months`` calendar months of labelled leads (months with at least
``min_backtest_leads``) is scored by a model that the *same recipe* trained only on the leads
created before that month, with the same junk cut-off rule, whose trailing window reaches into
the days before the month exactly as it does in production. The months are reported one by one
and pooled. A single holdout window decided promotion before; on the real file its recall moved
by 0.05-0.10 from one month to the next, so one window could pass or fail a recipe by chance.

A month counts only when the model judged on it was trained on at least ``min_fold_share`` of the
leads the candidate itself is trained on (the latest month always counts): a fold trained on a
third of the history judges a weaker model than the one that would be deployed. Its effect at
every month-end cut of the real file is in BENCHMARKS.md (the promotion gate table).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lead_assets.core.model.cutoff import trailing_cutoffs
from lead_assets.core.model.judging import classification_metrics, roc_auc
from lead_assets.core.model.recipe import PROBABILITY, LeadModel, TrainConfig, fit_recipe, window_of
from lead_assets.core.schema import CREATED_DATE, LABEL

MONTH = "month"
MONTH_COLUMNS = ("month", "leads", "train_leads", "positive_rate", "auc", "precision", "recall", "flagged_rate",
                 "ece", "brier", "precision_fixed", "recall_fixed", "flag_share", "trained_until")


def judge(model: LeadModel, history: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with the model's ``probability``, ``cutoff`` and ``cutoff_rule``.

    The cut-off window of the first days reaches back into ``history`` (leads created before
    ``rows``), as a scored day's window reaches into the days before it in the warehouse.
    """
    rule = model.cutoff_rule
    out = rows.copy()
    if out.empty:
        out["raw_score"], out[PROBABILITY], out["cutoff"], out["cutoff_rule"] = [], [], [], []
        return out
    first_day = out[CREATED_DATE].min().normalize() - pd.Timedelta(days=rule.window_days - 1)
    context = history[(history[CREATED_DATE] >= first_day) & (history[CREATED_DATE] < out[CREATED_DATE].min())]
    out["raw_score"] = model.raw_scores(out)
    out[PROBABILITY] = model.calibrator(out["raw_score"].to_numpy())
    dates = pd.concat([context[CREATED_DATE], out[CREATED_DATE]], ignore_index=True)
    probability = np.r_[model.predict_proba(context), out[PROBABILITY].to_numpy()]
    cut, text = trailing_cutoffs(dates, probability, rule)
    out["cutoff"] = cut[len(context):]
    out["cutoff_rule"] = text[len(context):]
    return out


def judged_metrics(judged: pd.DataFrame, bins: int = 10) -> dict[str, float]:
    """Metrics of judged rows at their own cut-offs, with the fixed threshold's precision/recall beside."""
    y = judged[LABEL].astype(int).to_numpy()
    p = judged[PROBABILITY].to_numpy()
    metrics = classification_metrics(y, p, judged["cutoff"].to_numpy(), bins)
    if "threshold_fixed" in judged:
        fixed = classification_metrics(y, p, judged["threshold_fixed"].to_numpy(), bins)
        metrics["precision_fixed"], metrics["recall_fixed"] = fixed["precision"], fixed["recall"]
    return metrics


@dataclass
class Backtest:
    """Per-month results, pooled metrics and every judged lead (with the month and fold window)."""

    table: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(MONTH_COLUMNS)))
    pooled: dict[str, float] = field(default_factory=dict)
    predictions: pd.DataFrame = field(default_factory=pd.DataFrame)
    skipped: list[str] = field(default_factory=list)

    @property
    def months(self) -> list[dict]:
        return self.table.to_dict("records")

    def markdown(self) -> str:
        if self.table.empty:
            return "no backtest month" + (f" ({'; '.join(self.skipped)})" if self.skipped else "")
        shown = self.table.copy()
        for column in shown.columns:
            if shown[column].dtype.kind == "f":
                shown[column] = shown[column].round(3)
        pooled = {k: round(float(self.pooled[k]), 3) for k in ("auc", "precision", "recall", "ece")
                  if k in self.pooled}
        not_counted = "".join(f"\n- not counted: {reason}" for reason in self.skipped)
        return (shown.to_markdown(index=False) + f"\n\npooled over {int(self.pooled.get('n', 0))} leads: {pooled}"
                + (f"\n{not_counted}" if not_counted else ""))


def month_of(dates: pd.Series) -> pd.Series:
    stamps = dates.dt.tz_convert("UTC").dt.tz_localize(None) if dates.dt.tz is not None else dates
    return stamps.dt.to_period("M").astype(str)


def fold_months(labelled_per_month: pd.Series, min_backtest_leads: int) -> list[str]:
    """The months a backtest can judge: each labelled month after the first with enough leads.

    A training with none cannot be judged; the retrain decision waits for one before a first model.
    """
    counts = labelled_per_month.sort_index()
    return [m for m in counts.index[1:] if counts[m] >= min_backtest_leads]


def backtest(labelled: pd.DataFrame, config: TrainConfig) -> Backtest:
    """Score each of the latest months with the recipe trained on the months before it.

    ``labelled``: sorted labelled leads (:func:`lead_assets.core.model.recipe.sort_labelled`).
    """
    if config.backtest_months == 0 or labelled.empty:
        return Backtest()
    months = month_of(labelled[CREATED_DATE])
    counts = months.value_counts().sort_index()
    candidates = fold_months(counts, config.min_backtest_leads)
    rows, judged_parts, skipped = [], [], []
    chosen = candidates[-config.backtest_months:]
    for month in chosen:
        in_month = (months == month).to_numpy()
        before = labelled[(months < month).to_numpy()]
        share = len(before) / len(labelled)
        if month != chosen[-1] and share < config.min_fold_share:
            skipped.append(f"{month}: trained on {len(before):,} leads, {share:.0%} of the {len(labelled):,} "
                           f"the model is trained on (below min_fold_share {config.min_fold_share:.0%})")
            continue
        try:
            recipe = fit_recipe(before, config)
        except ValueError as error:
            skipped.append(f"{month}: {error}")
            continue
        judged = judge(recipe.model, before, labelled[in_month])
        judged["threshold_fixed"] = recipe.model.threshold
        judged[MONTH] = month
        metrics = judged_metrics(judged, config.ece_bins)
        rows.append({
            "month": month, "leads": int(metrics["n"]), "train_leads": len(before),
            "positive_rate": metrics["positive_rate"],
            "auc": metrics["auc"], "precision": metrics["precision"], "recall": metrics["recall"],
            "flagged_rate": metrics["flagged_rate"], "ece": metrics["ece"], "brier": metrics["brier"],
            "precision_fixed": metrics["precision_fixed"], "recall_fixed": metrics["recall_fixed"],
            "flag_share": recipe.flag_share if recipe.flag_share is not None else float("nan"),
            "trained_until": window_of(before)[1],
        })
        judged_parts.append(judged)
    if not judged_parts:
        return Backtest(skipped=skipped or [f"{len(counts)} labelled month(s): need at least 2"])
    predictions = pd.concat(judged_parts, ignore_index=True)
    pooled = judged_metrics(predictions, config.ece_bins)
    pooled["months"] = float(len(rows))
    return Backtest(pd.DataFrame(rows, columns=list(MONTH_COLUMNS)), pooled, predictions, skipped)


def compare_with_champion(champion: LeadModel, labelled: pd.DataFrame, judged: pd.DataFrame) -> dict | None:
    """The champion and the challenger on the same leads: those the challenger was judged on that
    were created after the champion's training window (the champion never saw them).

    None when there are none: the champion was trained on every judged lead, so no fair
    comparison exists on this data.
    """
    trained_until = pd.Timestamp(champion.train_window[1]) if champion.train_window[1] else None
    if trained_until is None or judged.empty:
        return None
    if judged[CREATED_DATE].dt.tz is not None and trained_until.tzinfo is None:
        trained_until = trained_until.tz_localize(judged[CREATED_DATE].dt.tz)
    same = judged[judged[CREATED_DATE] > trained_until]
    if same.empty or same[LABEL].nunique() < 2:
        return None
    history = labelled[labelled[CREATED_DATE] < same[CREATED_DATE].min()]
    mine = judge(champion, history, same.drop(columns=["raw_score", PROBABILITY, "cutoff", "cutoff_rule"]))
    theirs = judged_metrics(mine)
    return {
        "auc": theirs["auc"], "precision": theirs["precision"], "recall": theirs["recall"],
        "challenger_auc": roc_auc(same[LABEL].astype(int), same[PROBABILITY]),
        "leads": float(len(same)),
        "window": f"{same[CREATED_DATE].min():%Y-%m-%d}..{same[CREATED_DATE].max():%Y-%m-%d}",
    }

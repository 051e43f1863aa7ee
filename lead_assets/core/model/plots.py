"""Evaluation plots as PNG bytes: ROC, precision-recall, reliability, cumulative gains, importance.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, no global state), and
matplotlib is imported inside the functions so importing this module costs nothing.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np

from lead_assets.core.model.judging import calibration_bins

if TYPE_CHECKING:
    from lead_assets.core.model.training import TrainResult


def _figure(width: float = 5.0, height: float = 4.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot(1, 1, 1)


def _png(figure) -> bytes:
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _ranked(y_true, proba) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels sorted by descending probability, cumulative true positives, and the cut points
    (last row of each distinct probability) where the curves may move."""
    y, p = np.asarray(y_true, dtype=float), np.asarray(proba, dtype=float)
    order = np.argsort(-p, kind="stable")
    y, p = y[order], p[order]
    cut = np.r_[p[1:] != p[:-1], True]
    return y, np.cumsum(y), cut


def roc_png(y_true, proba, auc: float | None = None) -> bytes:
    y, tp, cut = _ranked(y_true, proba)
    positives, negatives = max(y.sum(), 1), max(len(y) - y.sum(), 1)
    fpr = np.r_[0, ((np.arange(1, len(y) + 1) - tp) / negatives)[cut]]
    tpr = np.r_[0, (tp / positives)[cut]]
    figure, ax = _figure()
    ax.plot(fpr, tpr, label=f"model (AUC {auc:.3f})" if auc is not None else "model")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="random")
    ax.set(xlabel="false positive rate", ylabel="true positive rate (recall)", title="ROC (holdout)")
    ax.legend(loc="lower right")
    return _png(figure)


def precision_recall_png(y_true, proba, threshold: float | None = None) -> bytes:
    y, tp, cut = _ranked(y_true, proba)
    precision = (tp / np.arange(1, len(y) + 1))[cut]
    recall = (tp / max(y.sum(), 1))[cut]
    figure, ax = _figure()
    ax.plot(recall, precision, label="model")
    ax.axhline(y.mean() if len(y) else 0, linestyle="--", color="grey", label="positive rate")
    if threshold is not None:
        p = np.asarray(proba, dtype=float)
        flagged = p >= threshold
        labels = np.asarray(y_true, dtype=float)
        if flagged.any():
            ax.scatter([labels[flagged].sum() / max(labels.sum(), 1)], [labels[flagged].mean()], color="red",
                       zorder=3, label=f"threshold {threshold:.2f}")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (holdout)", xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="lower left")
    return _png(figure)


def calibration_png(y_true, proba, bins: int = 10) -> bytes:
    table = calibration_bins(y_true, proba, bins)
    figure, ax = _figure()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect")
    ax.plot(table["mean_probability"], table["positive_rate"], marker="o", label="model")
    ax.bar(table["lower"] + 0.5 / bins, table["leads"] / max(table["leads"].sum(), 1), width=1 / bins,
           alpha=0.2, color="grey", label="share of leads")
    ax.set(xlabel="calibrated probability", ylabel="observed completion rate",
           title=f"Reliability ({bins} equal-width bins, holdout)", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left")
    return _png(figure)


def cumulative_gains_png(y_true, proba) -> bytes:
    y, tp, cut = _ranked(y_true, proba)
    share_leads = np.r_[0, (np.arange(1, len(y) + 1) / max(len(y), 1))[cut]]
    share_positives = np.r_[0, (tp / max(y.sum(), 1))[cut]]
    figure, ax = _figure()
    ax.plot(share_leads, share_positives, label="model")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="random")
    ax.set(xlabel="share of leads called (best first)", ylabel="share of completions reached",
           title="Cumulative gains (holdout)", xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="lower right")
    return _png(figure)


def feature_importance_png(names, importances, top: int = 20) -> bytes:
    names, importances = np.asarray(names, dtype=object), np.asarray(importances, dtype=float)
    order = np.argsort(importances)[-top:]
    figure, ax = _figure(6.0, 0.35 * len(order) + 1.2)
    ax.barh(names[order].astype(str), importances[order])
    ax.set(xlabel="importance (CatBoost prediction values change)", title="Feature importance")
    return _png(figure)


def realised_png(weekly, targets: dict[str, float]) -> bytes:
    """Realised precision and recall of "not junk" per week of lead creation, one line per version."""
    figure, ax = _figure(7.0, 4.0)
    for version, part in weekly.groupby("model_version", sort=False):
        weeks = part["week"].astype("datetime64[ns]")
        ax.plot(weeks, part["precision"], marker="o", label=f"v{version} precision")
        ax.plot(weeks, part["recall"], marker="s", linestyle="--", label=f"v{version} recall")
    for name, style in (("precision", ":"), ("recall", "-.")):
        if name in targets:
            ax.axhline(targets[name], color="grey", linestyle=style, linewidth=1, label=f"{name} target")
    ax.set(xlabel="week the leads were created", ylabel="realised", ylim=(0, 1.02),
           title="Realised precision and recall of 'not junk'")
    ax.legend(loc="lower left", fontsize=7, ncol=2)
    figure.autofmt_xdate()
    return _png(figure)


def served_calibration_png(deciles: list[dict], version: str) -> bytes:
    """Predicted vs observed completion rate by score decile, as served."""
    figure, ax = _figure()
    predicted = [d["predicted"] for d in deciles]
    observed = [d["observed"] for d in deciles]
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    ax.plot(predicted, observed, marker="o", label=f"v{version} by score decile")
    ax.set(xlabel="mean served probability", ylabel="observed completion rate", xlim=(0, 1), ylim=(0, 1),
           title="Calibration as served")
    ax.legend(loc="upper left")
    return _png(figure)


def training_plots(result: TrainResult) -> dict[str, bytes]:
    """Every plot of a training run, by file name."""
    from lead_assets.core.schema import LABEL

    y = result.holdout[LABEL].astype(int).to_numpy()
    p = result.holdout["probability"].to_numpy()
    model = result.model
    return {
        "roc.png": roc_png(y, p, result.metrics.get("auc")),
        "precision_recall.png": precision_recall_png(y, p, model.threshold),
        "calibration.png": calibration_png(y, p),
        "cumulative_gains.png": cumulative_gains_png(y, p),
        "feature_importance.png": feature_importance_png(model.features, model.raw_model.get_feature_importance()),
    }


def markdown_images(pngs: dict[str, bytes]) -> str:
    """PNG plots as one markdown block with the images inline (data URIs): Dagster's asset page
    shows them beside the tables, with nothing to fetch from elsewhere."""
    import base64

    parts = []
    for name, png in pngs.items():
        title = name.removesuffix(".png").replace("_", " ")
        parts.append(f"**{title}**\n\n![{title}](data:image/png;base64,{base64.b64encode(png).decode()})")
    return "\n\n".join(parts)


def replay_png(months, targets: dict[str, float]) -> bytes:
    """A replay's months: realised precision, recall and calibration error of what sales were shown
    on arrival (solid), and of the first promoted model left alone (dashed)."""
    figure, ax = _figure(7.5, 4.2)
    x = np.arange(len(months))
    for name, marker in (("precision", "o"), ("recall", "s"), ("calibration_error", "^")):
        line = ax.plot(x, months[name], marker=marker, label=f"loop {name.replace('_', ' ')}")[0]
        if f"frozen_{name}" in months:
            ax.plot(x, months[f"frozen_{name}"], marker=marker, linestyle="--", color=line.get_color(),
                    alpha=0.6, label=f"frozen {name.replace('_', ' ')}")
    for name, style in (("precision", ":"), ("recall", "-.")):
        if name in targets:
            ax.axhline(targets[name], color="grey", linestyle=style, linewidth=1)
    ax.axhline(0.03, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xticks(x, months["month"], rotation=45)
    ax.set(xlabel="month the leads were created", ylabel="realised on arrival", ylim=(0, 1.02),
           title="Replay: what sales were shown, the loop vs the first model frozen")
    ax.legend(loc="center left", fontsize=7, ncol=2)
    return _png(figure)

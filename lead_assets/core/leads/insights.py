"""What drives conversion: tables and plots for marketing and sales, from labelled history.

Answers the business question behind the model: which sources, media, platforms and city
tiers bring leads that complete applications (and which bring junk), how well the buckets
separate converters, and how many converters a rep reaches by calling the top x% first.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from lead_assets.core.schema import CITY_TIER, LABEL, LEAD_ID, MEDIUM, PLATFORM, SOURCE

DIMENSIONS = {"source": SOURCE, "medium": MEDIUM, "platform": PLATFORM, "city_tier": CITY_TIER}
BUCKETS = ("hot", "warm", "cold", "junk")


def conversion_by(labelled: pd.DataFrame, column: str) -> pd.DataFrame:
    """Leads, conversions, conversion rate and share of volume per level, biggest first."""
    grouped = labelled.groupby(column, observed=True)[LABEL].agg(leads="size", conversions="sum")
    grouped["conversion_rate"] = grouped["conversions"] / grouped["leads"]
    grouped["share_of_leads"] = grouped["leads"] / grouped["leads"].sum()
    overall = labelled[LABEL].mean()
    grouped["lift"] = grouped["conversion_rate"] / overall if overall else np.nan
    return grouped.sort_values("leads", ascending=False).reset_index().rename(columns={column: "level"})


def conversion_by_bucket(scored: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    joined = scored.merge(labels[[LEAD_ID, LABEL]].dropna(), on=LEAD_ID, how="inner")
    table = joined.groupby("bucket")[LABEL].agg(leads="size", conversions="sum").reindex(BUCKETS, fill_value=0)
    table["conversion_rate"] = (table["conversions"] / table["leads"].replace(0, np.nan)).fillna(0.0)
    table["share_of_leads"] = table["leads"] / max(int(table["leads"].sum()), 1)
    return table.reset_index()


def cumulative_gains(scored: pd.DataFrame, labels: pd.DataFrame, steps: int = 10) -> pd.DataFrame:
    """Share of all converters reached by calling the top x% of leads by score."""
    joined = scored.merge(labels[[LEAD_ID, LABEL]].dropna(), on=LEAD_ID, how="inner")
    joined = joined.sort_values("probability", ascending=False).reset_index(drop=True)
    total = joined[LABEL].sum()
    rows = []
    for step in range(1, steps + 1):
        top = joined.iloc[: int(round(len(joined) * step / steps))]
        reached = top[LABEL].sum() / total if total else 0.0
        rows.append({"top_share": step / steps, "leads_called": len(top), "converters_reached": reached,
                     "precision": top[LABEL].mean() if len(top) else 0.0,
                     "lift": reached / (step / steps)})
    return pd.DataFrame(rows)


def build_insights(cleaned: pd.DataFrame, scored: pd.DataFrame) -> dict[str, pd.DataFrame]:
    labelled = cleaned[cleaned[LABEL].notna()].copy()
    labelled[LABEL] = labelled[LABEL].astype(int)
    tables = {f"conversion_by_{name}": conversion_by(labelled, column) for name, column in DIMENSIONS.items()}
    if len(scored) and len(labelled):
        tables["conversion_by_bucket"] = conversion_by_bucket(scored, labelled)
        tables["cumulative_gains"] = cumulative_gains(scored, labelled)
    return tables


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def plot_conversion(table: pd.DataFrame, title: str, top: int = 15) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = table.head(top).iloc[::-1]
    figure, axis = plt.subplots(figsize=(7, 0.35 * len(shown) + 1.2))
    axis.barh(shown["level"].astype(str), shown["conversion_rate"], color="#3b7dd8")
    for y, (rate, leads) in enumerate(zip(shown["conversion_rate"], shown["leads"])):
        axis.text(rate, y, f" {rate:.0%} of {leads:,}", va="center", fontsize=8)
    axis.set_xlim(0, 1.15)
    axis.set_xlabel("conversion rate (labelled history)")
    axis.set_title(title)
    png = _png(figure)
    plt.close(figure)
    return png


def plot_gains(gains: pd.DataFrame) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 4))
    axis.plot([0, *gains["top_share"]], [0, *gains["converters_reached"]], marker="o", label="by score")
    axis.plot([0, 1], [0, 1], linestyle="--", color="grey", label="random order")
    axis.set_xlabel("share of leads called, best first")
    axis.set_ylabel("share of converters reached")
    axis.set_title("Cumulative gains")
    axis.legend()
    png = _png(figure)
    plt.close(figure)
    return png


def render_plots(tables: dict[str, pd.DataFrame]) -> dict[str, bytes]:
    plots = {name: plot_conversion(table, name.replace("_", " "))
             for name, table in tables.items() if name.startswith("conversion_by_") and name != "conversion_by_bucket"}
    if "conversion_by_bucket" in tables:
        plots["conversion_by_bucket"] = plot_conversion(
            tables["conversion_by_bucket"].rename(columns={"bucket": "level"}), "conversion by bucket")
    if "cumulative_gains" in tables:
        plots["cumulative_gains"] = plot_gains(tables["cumulative_gains"])
    return plots


def to_markdown(tables: dict[str, pd.DataFrame], top: int = 10) -> str:
    parts = []
    for name, table in tables.items():
        shown = table.head(top).copy()
        for column in ("conversion_rate", "share_of_leads", "converters_reached", "precision"):
            if column in shown:
                shown[column] = shown[column].map(lambda v: f"{v:.1%}")
        for column in ("lift",):
            if column in shown:
                shown[column] = shown[column].map(lambda v: f"{v:.2f}")
        parts.append(f"### {name.replace('_', ' ')}\n\n{shown.to_markdown(index=False)}")
    return "\n\n".join(parts)

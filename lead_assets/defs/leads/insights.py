"""lead_insights: conversion by source, medium, platform, city tier and bucket; cumulative gains."""

import pandas as pd
from dagster import AssetExecutionContext, AssetIn, MetadataValue, asset

from lead_assets.core.leads import insights

from lead_assets.core.store import warehouse
from lead_assets.core.model.plots import markdown_images
from lead_assets.defs.resources import LeadHomeResource

ALL_DAYS = {"allow_missing_partitions": True}


@asset(
    ins={"cleaned_leads": AssetIn(metadata=ALL_DAYS), "scored_leads": AssetIn(metadata=ALL_DAYS)},
    group_name="scoring",
    io_manager_key="json_io_manager",
    kinds={"pandas", "mlflow"},
    description="What drives conversion, for marketing and sales: tables and PNG plots, also in MLflow.",
)
def lead_insights(context: AssetExecutionContext, cleaned_leads: pd.DataFrame, scored_leads: pd.DataFrame,
                  lead_home: LeadHomeResource) -> dict:
    home = lead_home.resolve()
    tables = insights.build_insights(cleaned_leads, scored_leads)
    plots = insights.render_plots(tables)
    folder = home.warehouse / "lead_insights"
    for name, table in tables.items():
        warehouse.atomic_write_bytes(folder / f"{name}.csv", table.to_csv(index=False).encode())
    for name, png in plots.items():
        warehouse.atomic_write_bytes(folder / f"{name}.png", png)
    _log_to_mlflow(home, tables, plots)
    markdown = insights.to_markdown(tables)
    context.add_output_metadata({
        "insights": MetadataValue.md(markdown),
        "plots": MetadataValue.md(markdown_images({f"{name}.png": png for name, png in plots.items()})),
        "folder": MetadataValue.path(str(folder)),
        "labelled_leads": int(cleaned_leads["app_complete_flag"].notna().sum()) if len(cleaned_leads) else 0,
        "scored_leads": len(scored_leads),
    })
    return {"folder": str(folder), "tables": sorted(tables), "plots": sorted(plots)}


def _log_to_mlflow(home, tables: dict, plots: dict) -> None:
    """One run per insights refresh in the 'lead_insights' experiment, closed before returning."""
    import tempfile
    from pathlib import Path

    import mlflow

    from lead_assets.core.store.experiments import use_experiment

    use_experiment("lead_insights", home)
    with mlflow.start_run(run_name="lead_insights"), tempfile.TemporaryDirectory() as tmp:
        for name, table in tables.items():
            table.to_csv(Path(tmp, f"{name}.csv"), index=False)
        for name, png in plots.items():
            Path(tmp, f"{name}.png").write_bytes(png)
        if "cumulative_gains" in tables:
            for row in tables["cumulative_gains"].itertuples():
                mlflow.log_metric("converters_reached", row.converters_reached, step=int(round(row.top_share * 100)))
        mlflow.log_artifacts(tmp, artifact_path="insights")

"""Resources: where state lives, the warehouse IO managers and MLflow tracking.

Everything is configuration: each field falls back to an environment variable and then to the
layout under ``LEAD_ASSETS_HOME`` (see ``lead_assets.core.home``), so the same code runs on a
laptop, against object storage, a Postgres-backed instance and a remote MLflow server.
"""


import json
from datetime import date, datetime, timezone
from typing import Any

import pandas as pd
from dagster import (
    ConfigurableIOManagerFactory,
    ConfigurableResource,
    InputContext,
    OutputContext,
    UPathIOManager,
)
from upath import UPath

from lead_assets.core import warehouse
from lead_assets.core.home import LeadHome, as_path
from lead_assets.core.schema import CREATED_DATE
from lead_assets.defs.partitions import FIRST_DAY


class LeadHomeResource(ConfigurableResource):
    """The data home; empty fields resolve from environment variables, then the default layout."""

    home: str | None = None
    inbox: str | None = None
    landing: str | None = None
    quarantine: str | None = None
    ledger: str | None = None
    warehouse: str | None = None
    mlflow_tracking_uri: str | None = None
    first_day: str = FIRST_DAY
    settle_seconds: float = 2.0

    def resolve(self) -> LeadHome:
        return LeadHome.resolve(
            self.home, inbox=self.inbox, landing=self.landing, quarantine=self.quarantine,
            ledger=self.ledger, warehouse=self.warehouse, mlflow_tracking_uri=self.mlflow_tracking_uri,
        ).ensure()

    @property
    def first_date(self) -> date:
        return date.fromisoformat(self.first_day)

    @staticmethod
    def today() -> date:
        return datetime.now(timezone.utc).date()


class PartitionedParquetIOManager(UPathIOManager):
    """One Parquet file per day partition; a single-run range is split by ``created_date``.

    Dagster's UPathIOManager refuses an output spanning several partitions, so this one splits
    the frame by day and writes every key of the range (an empty file for a day without leads,
    so that re-running a range also clears days that lost their leads).
    """

    extension = ".parquet"

    def dump_to_path(self, context: OutputContext, obj: pd.DataFrame, path: UPath) -> None:
        warehouse.atomic_write_bytes(path, warehouse.frame_to_parquet_bytes(obj))

    def load_from_path(self, context: InputContext, path: UPath) -> pd.DataFrame:
        return warehouse.read_parquet(path)

    def handle_output(self, context: OutputContext, obj: Any) -> None:
        if not context.has_asset_partitions or obj is None or not isinstance(obj, pd.DataFrame):
            return super().handle_output(context, obj)
        keys = list(context.asset_partition_keys)
        parts = warehouse.split_by_day(obj, CREATED_DATE, keys)
        placed = sum(len(p) for p in parts.values())
        if placed != len(obj):
            raise ValueError(
                f"{context.asset_key.to_user_string()}: {len(obj) - placed} row(s) have a "
                f"created_date outside the partitions {keys[0]}..{keys[-1]} of this run"
            )
        base = self._get_path_without_extension(context)
        for key, part in parts.items():
            warehouse.atomic_write_bytes(
                self._with_extension(self.make_safe_partition_path(base, key)),
                warehouse.frame_to_parquet_bytes(part),
            )
        context.add_output_metadata({
            "partitions_written": len(parts),
            "rows": len(obj),
            "path": str(base),
        })

    def load_input(self, context: InputContext) -> pd.DataFrame:
        """Several partitions load as one frame; partitions never written are skipped."""
        if not context.has_asset_partitions or len(context.asset_partition_keys) <= 1:
            loaded = super().load_input(context)
            return loaded if isinstance(loaded, pd.DataFrame) else pd.DataFrame()
        base = self._get_path_without_extension(context)
        asset = base.name
        return warehouse.read_partitions(base.parent, asset, context.asset_partition_keys)


class WarehouseIOManager(ConfigurableIOManagerFactory):
    """Day-partitioned frames as Parquet under the warehouse location (local or object storage)."""

    base_path: str | None = None

    def create_io_manager(self, context) -> PartitionedParquetIOManager:
        base = as_path(self.base_path) if self.base_path else LeadHome.resolve().warehouse
        return PartitionedParquetIOManager(base_path=base)


class JsonIOManager(UPathIOManager):
    """Small unpartitioned results (model info, insights summaries) as JSON files."""

    extension = ".json"

    def dump_to_path(self, context: OutputContext, obj: Any, path: UPath) -> None:
        warehouse.atomic_write_bytes(path, json.dumps(obj, indent=1, default=str).encode())

    def load_from_path(self, context: InputContext, path: UPath) -> Any:
        return json.loads(path.read_text())


class JsonIOManagerFactory(ConfigurableIOManagerFactory):
    base_path: str | None = None

    def create_io_manager(self, context) -> JsonIOManager:
        base = as_path(self.base_path) if self.base_path else LeadHome.resolve().warehouse
        return JsonIOManager(base_path=base)

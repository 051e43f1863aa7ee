"""The resources every asset uses, all hanging off one data home.

``LeadHomeResource`` is the only place a location is decided: the warehouse IO managers, the
MLflow model registry and MLflow tracking take it as a nested resource, so changing the home in
``Definitions`` (or a deployment's run config for the ``lead_home`` key) moves the Parquet
files, the model profiles and the MLflow runs together. ``resources()`` is the project's
``@definitions`` entry for them: each location comes from an ``EnvVar`` when the code location's
environment sets it, so a deployment (object storage, a remote MLflow server) is configuration.
Secrets never appear here: the MLflow client reads ``MLFLOW_TRACKING_TOKEN``/``_USERNAME``/
``_PASSWORD`` and fsspec reads the object store's credentials from the environment themselves.
"""

import json
import os
from collections.abc import Mapping
from datetime import date, datetime, timezone
from typing import Any

import pandas as pd
from dagster import (
    ConfigurableIOManagerFactory,
    ConfigurableResource,
    Definitions,
    EnvVar,
    InitResourceContext,
    InputContext,
    OutputContext,
    UPathIOManager,
    definitions,
)
from pydantic import PrivateAttr
from upath import UPath

from lead_assets.core import warehouse
from lead_assets.core.home import LeadHome
from lead_assets.core.schema import CREATED_DATE
from lead_assets.defs.partitions import FIRST_DAY
from lead_assets.defs.policy import OutcomePolicy

EXPERIMENT = "lead_scoring"
MODEL_NAME = "lead_scoring"

# LeadHomeResource field -> the environment variable a deployment sets it with.
ENVIRONMENT: Mapping[str, str] = {
    "home": "LEAD_ASSETS_HOME",
    "inbox": "LEAD_ASSETS_INBOX",
    "landing": "LEAD_ASSETS_LANDING",
    "quarantine": "LEAD_ASSETS_QUARANTINE",
    "ledger": "LEAD_ASSETS_LEDGER",
    "warehouse": "LEAD_ASSETS_WAREHOUSE",
    "mlflow_tracking_uri": "MLFLOW_TRACKING_URI",
}


class LeadHomeResource(ConfigurableResource):
    """The data home. An empty field falls back to its environment variable, then to the layout
    under ``home`` (see ``lead_assets.core.home``), so ``LeadHomeResource()`` in a test or the
    CLI finds what ``lead-assets`` finds."""

    home: str | None = None
    inbox: str | None = None
    landing: str | None = None
    quarantine: str | None = None
    ledger: str | None = None
    warehouse: str | None = None
    mlflow_tracking_uri: str | None = None
    first_day: str = FIRST_DAY
    settle_seconds: float = 2.0
    tick_max_files: int | None = None  # None: LEAD_ASSETS_TICK_MAX_FILES, else 100 (core.inbox)
    tick_max_bytes: int | None = None  # None: LEAD_ASSETS_TICK_MAX_BYTES, else 256 MiB

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None):
        """The home configured at launch: each location the environment sets is an ``EnvVar``
        (read when a run starts), and a run's config for ``lead_home`` overrides any field, for
        every resource that nests it (Dagster passes launch config to nested uses only for a
        resource made with ``configure_at_launch``)."""
        environ = os.environ if environ is None else environ
        sourced = {field: EnvVar(name) for field, name in ENVIRONMENT.items() if (environ.get(name) or "").strip()}
        return cls.configure_at_launch(**sourced)

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
    """Day-partitioned frames as Parquet under the home's warehouse (local or object storage)."""

    lead_home: LeadHomeResource

    def create_io_manager(self, context) -> PartitionedParquetIOManager:
        return PartitionedParquetIOManager(base_path=self.lead_home.resolve().warehouse)


class JsonIOManager(UPathIOManager):
    """Small unpartitioned results (model info, insights summaries) as JSON files."""

    extension = ".json"

    def dump_to_path(self, context: OutputContext, obj: Any, path: UPath) -> None:
        warehouse.atomic_write_bytes(path, json.dumps(obj, indent=1, default=str).encode())

    def load_from_path(self, context: InputContext, path: UPath) -> Any:
        return json.loads(path.read_text())


class JsonIOManagerFactory(ConfigurableIOManagerFactory):
    """JSON results next to the Parquet files, under the home's warehouse."""

    lead_home: LeadHomeResource

    def create_io_manager(self, context) -> JsonIOManager:
        return JsonIOManager(base_path=self.lead_home.resolve().warehouse)


class ModelRegistry(ConfigurableResource):
    """The MLflow model registry at the home's tracking URI: where the champion lives and moves."""

    lead_home: LeadHomeResource
    model_name: str = MODEL_NAME

    def uri(self) -> str:
        return self.lead_home.resolve().mlflow_tracking_uri

    def connect(self) -> None:
        import mlflow

        mlflow.set_tracking_uri(self.uri())

    def load_champion(self):
        from lead_assets.core import registry

        self.connect()
        return registry.load_champion(self.model_name)

    def champion_version(self) -> str | None:
        from lead_assets.core import registry

        self.connect()
        return registry.champion_version(self.model_name)

    def set_champion(self, version: str) -> str | None:
        from lead_assets.core import registry

        self.connect()
        return registry.set_champion(self.model_name, version)


class MlflowTracking(ConfigurableResource):
    """dagster-mlflow's tracking (one MLflow run per Dagster run) at the home's tracking URI.

    Setting it up opens (or rejoins) the Dagster run's MLflow run, so a step that requires the
    ``mlflow`` key logs into it through ``mlflow``'s own functions. ``dagster_mlflow`` imports
    mlflow (~1.2 s) at module import; it is imported here, when such a step starts, so code
    servers and other runs never pay for it.
    """

    lead_home: LeadHomeResource
    experiment_name: str = EXPERIMENT
    env_to_tag: list[str] | None = None
    extra_tags: dict[str, str] | None = None

    _tracking: Any = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        from dagster_mlflow.resources import MlFlow

        from lead_assets.core.experiments import use_experiment

        home = self.lead_home.resolve()
        use_experiment(self.experiment_name, home)
        self._tracking = MlFlow(context.replace_config({
            "experiment_name": self.experiment_name,
            "mlflow_tracking_uri": home.mlflow_tracking_uri,
            "env_to_tag": self.env_to_tag,
            "extra_tags": self.extra_tags or {},
        }))

    @property
    def tracking(self):
        """dagster-mlflow's ``MlFlow`` object of this run (its methods are mlflow's)."""
        return self._tracking


def resources_for(lead_home: LeadHomeResource) -> dict[str, Any]:
    """Every resource key the assets use, all nested on the one ``lead_home`` instance.

    Passing the same instance as the top-level ``lead_home`` and as each nested field is what
    makes Dagster treat them as one resource: run config for ``lead_home`` reaches them all.
    """
    return {
        "lead_home": lead_home,
        "io_manager": WarehouseIOManager(lead_home=lead_home),
        "json_io_manager": JsonIOManagerFactory(lead_home=lead_home),
        "model_registry": ModelRegistry(lead_home=lead_home),
        "mlflow": MlflowTracking(lead_home=lead_home),
        "outcome_policy": OutcomePolicy.from_environment(),
    }


@definitions
def resources() -> Definitions:
    """The project's resources, with each location an ``EnvVar`` where the environment sets one."""
    return Definitions(resources=resources_for(LeadHomeResource.from_environment()))

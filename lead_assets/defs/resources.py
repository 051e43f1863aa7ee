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
from datetime import date
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
from pydantic import Field, PrivateAttr
from upath import UPath

from lead_assets.core import clock

from lead_assets.core.store import warehouse
from lead_assets.core.store.home import LeadHome, is_local
from lead_assets.core.schema import CREATED_DATE
from lead_assets.defs.partitions import FIRST_DAY
from lead_assets.defs.policy import OutcomePolicy

EXPERIMENT = "lead_scoring"
MODEL_CACHE = "model_cache"
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
    under ``home`` (see ``lead_assets.core.store.home``), so ``LeadHomeResource()`` in a test or the
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
    tick_max_files: int | None = None  # None: LEAD_ASSETS_TICK_MAX_FILES, else 100 (core.inbox.ledger)
    tick_max_bytes: int | None = None  # None: LEAD_ASSETS_TICK_MAX_BYTES, else 256 MiB
    tick_watch_seconds: float | None = None  # None: LEAD_ASSETS_TICK_WATCH_SECONDS, else 0 (off)
    settle_closed_files: bool | None = None  # None: LEAD_ASSETS_SETTLE_CLOSED_FILES, else off
    chunk_rows: int | None = None  # None: LEAD_ASSETS_CHUNK_ROWS, else 100,000 (range runs stream)
    chunk_days: int | None = None  # None: LEAD_ASSETS_CHUNK_DAYS, else no cap

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

    def chunk_sizes(self) -> tuple[int, int | None]:
        """Most rows and days a range run's step holds at once (a day is never split)."""
        rows = self.chunk_rows or _env_int("LEAD_ASSETS_CHUNK_ROWS") or warehouse.DEFAULT_CHUNK_ROWS
        return rows, self.chunk_days or _env_int("LEAD_ASSETS_CHUNK_DAYS")

    def watch_seconds(self, home: LeadHome) -> float:
        """How long an inbox tick keeps looking for a ready file before it returns (0: it looks
        once). Only for a local inbox: on object storage every look is a LIST request."""
        if not is_local(home.inbox):
            return 0.0
        if self.tick_watch_seconds is not None:
            return self.tick_watch_seconds
        return float((os.environ.get("LEAD_ASSETS_TICK_WATCH_SECONDS") or "").strip() or 0)

    def settles_closed_files(self, home: LeadHome) -> bool:
        """Whether the inbox asks the kernel who writes a file (``core.inbox.writers``): a fresh file
        that no process writes any more is ready before ``settle_seconds``, and one still held open
        for writing is not taken however long it has been unchanged. Only for a local inbox; off
        unless set, because a writer that closes and reopens the file between writes would be cut short."""
        if not is_local(home.inbox):
            return False
        if self.settle_closed_files is not None:
            return self.settle_closed_files
        return (os.environ.get("LEAD_ASSETS_SETTLE_CLOSED_FILES") or "").strip().lower() in ("1", "true", "yes", "on")

    @property
    def first_date(self) -> date:
        return date.fromisoformat(self.first_day)

    @staticmethod
    def today() -> date:
        return clock.today()


class PartitionedParquetIOManager(UPathIOManager):
    """One Parquet file per day partition; a single-run range is split by ``created_date``.

    Dagster's UPathIOManager refuses an output spanning several partitions, so this one splits
    the output by day and writes every key of the range (an empty file for a day without leads,
    so that re-running a range also clears days that lost their leads).

    Range runs stream: an input annotated ``DayChunks`` is a lazy reader of the run's day files
    (a chunk of at most ``chunk_rows`` rows, or one whole day, at a time), and a ``DayStream``
    output is written day by day as its frames come, so a step's memory follows the chunk size,
    not the range. An input annotated ``pd.DataFrame`` still gets every partition as one frame.
    """

    extension = ".parquet"

    def __init__(self, base_path: UPath, chunk_rows: int = warehouse.DEFAULT_CHUNK_ROWS,
                 chunk_days: int | None = None):
        super().__init__(base_path=base_path)
        self.chunk_rows = chunk_rows
        self.chunk_days = chunk_days

    def dump_to_path(self, context: OutputContext, obj: pd.DataFrame, path: UPath) -> None:
        warehouse.atomic_write_bytes(path, warehouse.frame_to_parquet_bytes(obj))

    def load_from_path(self, context: InputContext, path: UPath) -> pd.DataFrame:
        return warehouse.read_parquet(path)

    def handle_output(self, context: OutputContext, obj: Any) -> None:
        if isinstance(obj, warehouse.DayStream):
            return self._write_stream(context, obj)
        if not context.has_asset_partitions or obj is None or not isinstance(obj, pd.DataFrame):
            return super().handle_output(context, obj)
        return self._write_stream(context, warehouse.DayStream([obj]))

    def _write_stream(self, context: OutputContext, stream: warehouse.DayStream) -> None:
        if not context.has_asset_partitions:
            raise TypeError(f"{context.asset_key.to_user_string()}: a DayStream output needs a partitioned asset")
        base = self._get_path_without_extension(context)
        written = warehouse.write_stream(base.parent, base.name, list(context.asset_partition_keys),
                                         stream.frames, CREATED_DATE)
        context.add_output_metadata({
            "partitions_written": len(written),
            "rows": sum(written.values()),
            "largest_day_rows": max(written.values(), default=0),
            "path": str(base),
            **stream.metadata(),
        })

    def load_input(self, context: InputContext) -> Any:
        """``DayChunks`` when the step asks for it; else one frame (partitions never written are skipped)."""
        if _wants_chunks(context):
            base = self._get_path_without_extension(context)
            days = context.asset_partition_keys if context.has_asset_partitions else []
            return warehouse.DayChunks(base.parent, base.name, tuple(days), chunk_rows=self.chunk_rows,
                                       chunk_days=self.chunk_days)
        if not context.has_asset_partitions or len(context.asset_partition_keys) <= 1:
            loaded = super().load_input(context)
            return loaded if isinstance(loaded, pd.DataFrame) else pd.DataFrame()
        base = self._get_path_without_extension(context)
        return warehouse.read_partitions(base.parent, base.name, context.asset_partition_keys)


def _wants_chunks(context: InputContext) -> bool:
    typing_type = getattr(context.dagster_type, "typing_type", None)
    return isinstance(typing_type, type) and issubclass(typing_type, warehouse.DayChunks)


def _env_int(name: str) -> int | None:
    value = (os.environ.get(name) or "").strip()
    return int(value) if value else None


class WarehouseIOManager(ConfigurableIOManagerFactory):
    """Day-partitioned frames as Parquet under the home's warehouse (local or object storage).

    ``chunk_rows``/``chunk_days`` bound what a range run's step holds at once (see
    ``PartitionedParquetIOManager``); unset, they come from the ``lead_home`` resource's fields
    of the same names, then ``LEAD_ASSETS_CHUNK_ROWS`` (default 100,000 rows) and
    ``LEAD_ASSETS_CHUNK_DAYS`` (default: no cap on days). ``raw_leads`` reads ``lead_home``'s.
    """

    lead_home: LeadHomeResource
    chunk_rows: int | None = Field(None, description="Most rows a range run's step reads at once (a day is "
                                                     "never split); None: LEAD_ASSETS_CHUNK_ROWS, else 100,000.")
    chunk_days: int | None = Field(None, description="Most days per chunk; None: LEAD_ASSETS_CHUNK_DAYS, else "
                                                     "no cap.")

    def create_io_manager(self, context) -> PartitionedParquetIOManager:
        home_rows, home_days = self.lead_home.chunk_sizes()
        rows, days = self.chunk_rows or home_rows, self.chunk_days or home_days
        return PartitionedParquetIOManager(base_path=self.lead_home.resolve().warehouse, chunk_rows=rows,
                                           chunk_days=days)


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
        """The champion and its version. A version's model never changes in MLflow, so each one
        loaded is kept as a pickle under the warehouse (``model_cache/``, keyed by tracking URI,
        name and version): later runs resolve the alias (one registry query) and skip MLflow's
        model loading (~1 s a run)."""
        import pickle

        from lead_assets.core.release import registry

        self.connect()
        version = registry.champion_version(self.model_name)
        if version is None:
            return None
        cached = self._cached(version)
        if cached.exists():
            with cached.open("rb") as handle:
                return pickle.load(handle), version
        loaded = registry.load_champion(self.model_name)
        if loaded is not None:
            warehouse.atomic_write_bytes(self._cached(loaded[1]), pickle.dumps(loaded[0]))
        return loaded

    def _cached(self, version) -> UPath:
        import hashlib

        tracking = hashlib.sha256(self.uri().encode()).hexdigest()[:12]
        return self.lead_home.resolve().warehouse / MODEL_CACHE / f"{self.model_name}-{version}-{tracking}.pkl"

    def champion_version(self) -> str | None:
        from lead_assets.core.release import registry

        self.connect()
        return registry.champion_version(self.model_name)

    def set_champion(self, version: str) -> str | None:
        from lead_assets.core.release import registry

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

        from lead_assets.core.store.experiments import use_experiment

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


class CrmResource(ConfigurableResource):
    """Where scores are published for the CRM: the outbox folder (local or object storage, like the
    rest of the home) and the SQL table's database (any SQLAlchemy URL: the production Postgres,
    or by default a SQLite file in the home)."""

    lead_home: LeadHomeResource
    database_url: str | None = None
    outbox: str | None = None
    _engine = PrivateAttr(default=None)

    @classmethod
    def from_environment(cls, lead_home: LeadHomeResource) -> "CrmResource":
        names = {"database_url": "LEAD_ASSETS_CRM_DATABASE_URL", "outbox": "LEAD_ASSETS_OUTBOX"}
        return cls(lead_home=lead_home,
                   **{field: EnvVar(name) for field, name in names.items() if os.environ.get(name, "").strip()})

    def outbox_path(self):
        from upath import UPath

        return UPath(self.outbox) if self.outbox else self.lead_home.resolve().root / "outbox"

    def url(self) -> str:
        if self.database_url:
            return self.database_url
        root = self.lead_home.resolve().root
        if not is_local(root):
            raise ValueError(f"the home {root} is not on a local disk: set LEAD_ASSETS_CRM_DATABASE_URL "
                             "(e.g. the deployment's Postgres) for the CRM table")
        folder = root / "crm"
        folder.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{folder.path}/lead_scores.db"

    def engine(self):
        import sqlalchemy as sa

        if self._engine is None:
            self._engine = sa.create_engine(self.url(), future=True)
        return self._engine


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
        "crm_sync": CrmResource.from_environment(lead_home),
    }


@definitions
def resources() -> Definitions:
    """The project's resources, with each location an ``EnvVar`` where the environment sets one."""
    return Definitions(resources=resources_for(LeadHomeResource.from_environment()))

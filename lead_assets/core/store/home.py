"""Where all state lives: one ``LEAD_ASSETS_HOME`` folder, every part overridable.

Layout (each entry can be moved with its own environment variable):

    $LEAD_ASSETS_HOME/            LEAD_ASSETS_HOME         (default: ./.lead_assets)
        inbox/                    LEAD_ASSETS_INBOX        users drop CSV files here
        landing/                  LEAD_ASSETS_LANDING      accepted files, immutable, by sha256
        quarantine/               LEAD_ASSETS_QUARANTINE   rejected files + <name>.reason.json
        ledger/                   LEAD_ASSETS_LEDGER       one JSON per inbox file: its fate
        warehouse/                LEAD_ASSETS_WAREHOUSE    Parquet, one file per asset partition
            model_profiles/<v>.json                        how model version v scored its holdout
        mlflow/mlflow.db          MLFLOW_TRACKING_URI      sqlite tracking store + artifacts
        dagster/                  DAGSTER_HOME             instance, when DAGSTER_HOME is unset

Every location may be a local path or an fsspec URL (``s3://bucket/prefix``), so moving the
warehouse to object storage is configuration only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from upath import UPath

DEFAULT_HOME = ".lead_assets"
PROFILES = "model_profiles"


def as_path(location: str | os.PathLike) -> UPath:
    """A local path or an fsspec URL as a UPath (local paths are made absolute)."""
    text = os.fspath(location)
    if "://" in text:
        return UPath(text)
    return UPath(Path(text).expanduser().resolve())


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


@dataclass(frozen=True)
class LeadHome:
    """Resolved locations of every piece of state the platform reads or writes."""

    root: UPath
    inbox: UPath
    landing: UPath
    quarantine: UPath
    ledger: UPath
    warehouse: UPath
    mlflow_tracking_uri: str
    mlflow_artifacts: UPath
    dagster_home: UPath

    @classmethod
    def resolve(
        cls,
        root: str | os.PathLike | None = None,
        *,
        inbox: str | None = None,
        landing: str | None = None,
        quarantine: str | None = None,
        ledger: str | None = None,
        warehouse: str | None = None,
        mlflow_tracking_uri: str | None = None,
        dagster_home: str | None = None,
    ) -> "LeadHome":
        """Explicit arguments win, then environment variables, then the layout under root."""
        base = as_path(root or _env("LEAD_ASSETS_HOME") or DEFAULT_HOME)

        def pick(explicit: str | None, env: str, default: str) -> UPath:
            return as_path(explicit or _env(env) or str(base / default))

        mlflow_dir = base / "mlflow"
        tracking = mlflow_tracking_uri or _env("MLFLOW_TRACKING_URI")
        if not tracking:
            tracking = f"sqlite:///{mlflow_dir / 'mlflow.db'}"
        return cls(
            root=base,
            inbox=pick(inbox, "LEAD_ASSETS_INBOX", "inbox"),
            landing=pick(landing, "LEAD_ASSETS_LANDING", "landing"),
            quarantine=pick(quarantine, "LEAD_ASSETS_QUARANTINE", "quarantine"),
            ledger=pick(ledger, "LEAD_ASSETS_LEDGER", "ledger"),
            warehouse=pick(warehouse, "LEAD_ASSETS_WAREHOUSE", "warehouse"),
            mlflow_tracking_uri=tracking,
            mlflow_artifacts=mlflow_dir / "artifacts",
            dagster_home=pick(dagster_home, "DAGSTER_HOME", "dagster"),
        )

    def ensure(self) -> "LeadHome":
        """Create the local folders (object-storage prefixes need no creating)."""
        for path in (self.inbox, self.landing, self.quarantine, self.ledger, self.warehouse,
                     self.mlflow_artifacts):
            if is_local(path):
                path.mkdir(parents=True, exist_ok=True)
        return self


def is_local(path: UPath) -> bool:
    return getattr(path, "protocol", "") in ("", "file", "local")


def profile_path(home: LeadHome, version: str) -> UPath:
    """Where a model version's holdout profile lives: training writes it, drift monitoring reads it."""
    return home.warehouse / PROFILES / f"{version}.json"

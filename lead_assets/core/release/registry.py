"""MLflow tracking and the model registry: log a training run, register it, move the champion.

Promotion uses model aliases (MLflow 3), not stages: ``champion`` is the model that scores
leads and ``previous_champion`` the one it replaced, so a bad promotion can be rolled back. The
order of champions is also kept in the registered model's tag ``champion_history`` so that a
rollback can name the next previous champion.

mlflow takes about 1.5 s to import, so it is imported inside functions only. The pyfunc wrapper
class subclasses ``mlflow.pyfunc.PythonModel``; it is built on first use and published as this
module's ``LeadModelPyfunc`` attribute, so pickles refer to it by name.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from lead_assets.core.model.recipe import LeadModel
    from lead_assets.core.model.training import TrainResult

CHAMPION = "champion"
PREVIOUS = "previous_champion"
HISTORY_TAG = "champion_history"
DEFAULT_MODEL_NAME = "lead_scoring"
EXAMPLE_ROWS = 5


class NoChampionError(ValueError):
    """The registry has no champion (or no previous champion) to act on."""


def _quiet() -> None:
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


@contextmanager
def _hushed():
    """MLflow warns on every pyfunc log about pickling; said once here: the model is our own code."""
    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


@lru_cache(maxsize=1)
def _pyfunc_class():
    import mlflow.pyfunc

    class LeadModelPyfunc(mlflow.pyfunc.PythonModel):
        """Raw leads in, one scored answer per lead out (see :mod:`lead_assets.core.scoring.online`).

        The registered version is not known when the model is logged, so it comes from the
        ``model_config`` the loader passes (``lead-assets serve`` does; a standalone ``mlflow
        models serve`` takes it from ``MLFLOW_PYFUNC_INFERENCE_CONFIG='{"model_version": "7"}'``).
        """

        def __init__(self, lead_model: LeadModel, model_name: str = DEFAULT_MODEL_NAME):
            self.lead_model = lead_model
            self.model_name = model_name

        def load_context(self, context):
            import os

            from lead_assets.core.scoring.online import CUTOFF_FILE_ENV, CutoffFile

            config = dict(getattr(context, "model_config", None) or {})
            self.model_name = str(config.get("model_name") or getattr(self, "model_name", DEFAULT_MODEL_NAME))
            version = config.get("model_version")
            self.model_version = None if version in (None, "") else str(version)
            self.cutoff_file = CutoffFile(config.get("cutoff_file") or os.environ.get(CUTOFF_FILE_ENV))

        def predict(self, context, model_input: pd.DataFrame, params=None):
            from lead_assets.core.scoring import online

            try:
                return self.answer(model_input, params)
            except online.InvalidLeads as error:
                from mlflow.exceptions import MlflowException
                from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

                raise MlflowException(f"invalid leads: {error}", error_code=INVALID_PARAMETER_VALUE) from error

        def answer(self, records, params=None) -> list[dict]:
            """``predict`` without MLflow: a frame or the JSON records themselves (``lead-assets serve``
            answers one-lead JSON requests through this; MLflow's input cast costs more than the rules
            that type the records anyway). Raises ``online.InvalidLeads``."""
            from lead_assets.core.scoring import online

            params = params or {}
            version = getattr(self, "model_version", None)
            cutoff_file = getattr(self, "cutoff_file", None)
            published = cutoff_file.read() if cutoff_file else None
            model = self.served_model(version, published)
            cutoff = online.choose_cutoff(model, version, params.get("cutoff"), published)
            return online.score_records(records, model, getattr(self, "model_name", DEFAULT_MODEL_NAME),
                                        version, cutoff, online.bucket_config(params))

        def served_model(self, version, published):
            """The model through the recalibration published for this version (kept until it changes)."""
            from lead_assets.core.scoring import online

            refit = online.published_recalibration(published, version)
            key = None if refit is None else refit.fitted_at
            cached = getattr(self, "_served", None)
            if cached is None or cached[0] != key:
                from lead_assets.core.model.recalibration import recalibrated

                cached = (key, recalibrated(self.lead_model, refit))
                self._served = cached
            return cached[1]

    LeadModelPyfunc.__module__ = __name__
    LeadModelPyfunc.__qualname__ = "LeadModelPyfunc"
    globals()["LeadModelPyfunc"] = LeadModelPyfunc
    return LeadModelPyfunc


def __getattr__(name: str):
    if name == "LeadModelPyfunc":
        return _pyfunc_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _client():
    from mlflow import MlflowClient

    _quiet()
    return MlflowClient()


def _is_missing(error: Exception) -> bool:
    """No such registered model (RESOURCE_DOES_NOT_EXIST) or alias (reported as INVALID_PARAMETER_VALUE)."""
    return getattr(error, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


def _pip_requirements() -> list[str]:
    """What the model's own code imports (core.inbox.parsing reads paths with universal_pathlib)."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in
            ("catboost", "pandas", "numpy", "cloudpickle", "universal_pathlib", "fsspec")]


def _code_path(folder: Path) -> str:
    """The project code the pickled model needs: ``lead_assets`` with its core and reference data.

    Logged as the model's ``code_paths``, so a model server needs only MLflow and the model's
    requirements, not this repository. The Dagster layer stays behind.
    """
    import lead_assets

    source, target = Path(lead_assets.__file__).parent, folder / "lead_assets"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for part in ("core", "reference"):
        shutil.copytree(source / part, target / part, ignore=skip)
    shutil.copy2(source / "__init__.py", target / "__init__.py")
    return str(target)


def raw_input_schema():
    """The served model's input: a raw CodePro lead as a web form or webhook has it.

    Every field is ``Any`` and optional for MLflow, so the model gets the JSON values as sent and
    the batch's row rules judge them (``core.scoring.online.type_leads``): had MLflow cast them first,
    ``referred_lead: true`` would be scored as 1, an object in a text field as its ``str()``,
    and an empty ``dataframe_records`` refused as seven missing fields. Which fields are
    required, and every rule, is the batch's (README, "Data quality").
    """
    from mlflow.types.schema import AnyType, ColSpec, Schema

    from lead_assets.core import schema

    return Schema([ColSpec(AnyType(), c, required=False) for c in
                   (schema.LEAD_ID, *schema.required_columns(), *schema.reference().interaction_columns)])


def params_schema():
    """Per-request settings: the junk cut-off (else the published or fallback one) and bucket cut-offs."""
    from mlflow.types.schema import ParamSchema, ParamSpec

    from lead_assets.core.scoring.batch import BucketConfig

    default = BucketConfig()
    return ParamSchema([ParamSpec("cutoff", "double", None),
                        ParamSpec("hot_min_probability", "double", default.hot),
                        ParamSpec("warm_min_probability", "double", default.warm)])


def raw_example(model: LeadModel) -> pd.DataFrame:
    """A few raw leads of the last training day, from the project's synthetic generator."""
    from lead_assets.core import schema
    from lead_assets.core.leads.synth import generate_leads

    day = pd.Timestamp(model.train_window[1]).date() if model.train_window[1] else "2021-07-01"
    raw = generate_leads(day, 1, EXAMPLE_ROWS, seed=0, labelled=False).reset_index(drop=True)
    keep = [*schema.required_columns(), *[c for c in schema.reference().interaction_columns if raw[c].notna().any()]]
    example = raw[keep].copy()
    example.insert(0, schema.LEAD_ID, [f"example-{i}" for i in range(len(example))])
    example.loc[0, schema.LEAD_ID] = None  # lead_id is optional: derived as ingest derives it
    return example


def _write_artifacts(result: TrainResult, folder: Path, plots: dict[str, bytes] | None) -> None:
    from lead_assets.core.model.plots import training_plots

    (folder / "plots").mkdir()
    for name, png in (plots if plots is not None else training_plots(result)).items():
        (folder / "plots" / name).write_bytes(png)
    (folder / "tables").mkdir()
    result.segments.to_csv(folder / "tables" / "segments.csv", index=False)
    result.lift.to_csv(folder / "tables" / "lift.csv", index=False)
    (folder / "tables" / "segments.md").write_text(result.segments.to_markdown(index=False))
    (folder / "tables" / "lift.md").write_text(result.lift.to_markdown(index=False))
    (folder / "model_card.md").write_text(result.card_markdown)
    (folder / "windows.json").write_text(json.dumps(result.windows, indent=1))


def log_training(result: TrainResult, *, model_name: str = DEFAULT_MODEL_NAME, run_name: str | None = None,
                 tags: dict[str, Any] | None = None, plots: dict[str, bytes] | None = None) -> str:
    """Log params, metrics, plots, tables, the model card and the pyfunc model; register it.

    Uses the active MLflow run if there is one (and leaves it open for its owner), otherwise
    starts one and ends it. Returns the new registered model version.
    """
    import mlflow
    from mlflow.models import ModelSignature, infer_signature

    _quiet()
    owned = mlflow.active_run() is None
    if owned:
        mlflow.start_run(run_name=run_name or f"{model_name}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}")
    try:
        mlflow.set_tags({"model_name": model_name, "threshold_meets_targets": str(result.threshold_meets_targets),
                         "holdout_window": " .. ".join(result.holdout_window), **(tags or {})})
        mlflow.log_params({k: "" if v is None else str(v) for k, v in result.params.items()})
        with tempfile.TemporaryDirectory() as folder:
            _write_artifacts(result, Path(folder), plots)
            mlflow.log_artifacts(folder)
        wrapper = _pyfunc_class()(result.model, model_name)
        example = raw_example(result.model)
        with _hushed(), tempfile.TemporaryDirectory() as code:
            answers = pd.DataFrame(wrapper.predict(None, example)).assign(model_version="")  # a str once served
            outputs = infer_signature(example, answers).outputs
            info = mlflow.pyfunc.log_model(
                name="model", python_model=wrapper, input_example=example,
                signature=ModelSignature(raw_input_schema(), outputs, params_schema()),
                pip_requirements=_pip_requirements(), code_paths=[_code_path(Path(code))],
                model_config={"model_name": model_name, "model_version": "", "cutoff_file": ""},
            )
        metrics = {k: float(v) for k, v in result.metrics.items() if math.isfinite(float(v))}
        mlflow.log_metrics(metrics, model_id=info.model_id)
        version = _register(model_name, info, {"threshold_reason": result.threshold_reason})
    except BaseException:
        if owned:
            mlflow.end_run("FAILED")
        raise
    if owned:
        mlflow.end_run("FINISHED")
    return version


def _register(name: str, info, tags: dict[str, str]) -> str:
    """A new version of the registered model (created if needed) pointing at the logged model."""
    from mlflow.exceptions import MlflowException

    client = _client()
    try:
        client.create_registered_model(name)
    except MlflowException as error:
        if getattr(error, "error_code", "") not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
    created = client.create_model_version(name, source=info.model_uri, run_id=info.run_id, tags=tags,
                                          model_id=info.model_id)
    return str(created.version)


def champion_version(name: str = DEFAULT_MODEL_NAME, alias: str = CHAMPION) -> str | None:
    """The version the alias points to, or None (no such model or alias)."""
    from mlflow.exceptions import MlflowException

    try:
        return str(_client().get_model_version_by_alias(name, alias).version)
    except MlflowException as error:
        if _is_missing(error):
            return None
        raise


def _history(client, name: str) -> list[str]:
    text = client.get_registered_model(name).tags.get(HISTORY_TAG, "")
    return [v for v in text.split(",") if v]


def set_champion(name: str, version: str) -> str | None:
    """Point ``champion`` at ``version``; the replaced champion becomes ``previous_champion``.

    Returns the replaced champion's version (None if there was none or it is the same version).
    """
    client = _client()
    version = str(version)
    client.get_model_version(name, version)
    current = champion_version(name)
    if current == version:
        return None
    if current is not None:
        client.set_registered_model_alias(name, PREVIOUS, current)
    client.set_registered_model_alias(name, CHAMPION, version)
    history = _history(client, name)
    client.set_registered_model_tag(name, HISTORY_TAG, ",".join([*history, version]))
    return current


def rollback(name: str = DEFAULT_MODEL_NAME) -> str:
    """Make ``previous_champion`` the champion again; returns the restored version.

    The demoted version is tagged ``rolled_back_at``; ``previous_champion`` then moves one step
    further back in the champion history (or is removed when there is none).
    """
    client = _client()
    previous = champion_version(name, PREVIOUS)
    current = champion_version(name)
    if previous is None:
        raise NoChampionError(
            f"{name}: no previous champion to roll back to"
            + (f" (champion is version {current})" if current else " (and no champion either)")
        )
    client.set_registered_model_alias(name, CHAMPION, previous)
    if current is not None:
        client.set_model_version_tag(name, current, "rolled_back_at",
                                     datetime.now(timezone.utc).isoformat(timespec="seconds"))
    history = [v for v in _history(client, name) if v != current]
    while history and history[-1] != previous:
        history.pop()
    earlier = history[-2] if len(history) > 1 else None
    if earlier is not None:
        client.set_registered_model_alias(name, PREVIOUS, earlier)
    else:
        client.delete_registered_model_alias(name, PREVIOUS)
    client.set_registered_model_tag(name, HISTORY_TAG, ",".join(history or [previous]))
    return previous


def load_champion(name: str = DEFAULT_MODEL_NAME) -> tuple[LeadModel, str] | None:
    """The champion as a :class:`LeadModel` and its version, or None when there is no champion.

    The alias is resolved once and that exact version is loaded, so the returned version always
    belongs to the returned model even if the alias moves meanwhile.
    """
    version = champion_version(name)
    if version is None:
        return None
    return load_version(name, version), version


def load_version(name: str, version: str) -> LeadModel:
    """One registered version as a :class:`LeadModel` (a replay scores with its first champion)."""
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(f"models:/{name}/{version}").unwrap_python_model().lead_model


def describe(name: str = DEFAULT_MODEL_NAME) -> dict[str, Any]:
    """Champion, previous champion, history and the champion's holdout metrics (for ``model show``)."""
    from mlflow.exceptions import MlflowException

    client = _client()
    try:
        registered = client.get_registered_model(name)
    except MlflowException as error:
        if _is_missing(error):
            return {"model_name": name, "champion_version": None, "message": f"no registered model named {name!r}"}
        raise
    champion = champion_version(name)
    out: dict[str, Any] = {
        "model_name": name,
        "champion_version": champion,
        "previous_champion_version": champion_version(name, PREVIOUS),
        "champion_history": _history(client, name),
        "aliases": dict(getattr(registered, "aliases", {}) or {}),
    }
    if champion is not None:
        version = client.get_model_version(name, champion)
        run = client.get_run(version.run_id)
        keep = ("auc", "precision", "recall", "f1", "threshold", "brier", "ece", "n_train", "n_test")
        out.update({
            "champion_run_id": version.run_id,
            "champion_registered_at": datetime.fromtimestamp(version.creation_timestamp / 1000, timezone.utc)
            .isoformat(timespec="seconds"),
            "champion_metrics": {k: run.data.metrics[k] for k in keep if k in run.data.metrics},
            "holdout_window": run.data.tags.get("holdout_window"),
        })
    return out

"""The lead_assets code location: whatever lives under ``lead_assets/defs/``, found by Dagster's loader.

Assets, checks, sensors, schedules and jobs come from the module that defines each of them,
the resources from the ``@definitions`` function in ``defs/resources.py``; anything
``dg scaffold defs`` adds under ``lead_assets/defs/`` is loaded without being listed here.
This file adds only the executor, because a deployment swaps it (``deploy/definitions.py``).
"""

from pathlib import Path

from dagster import Definitions, ExecutorDefinition, Field, load_from_defs_folder, multi_or_in_process_executor

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Dagster's own in-process/multiprocess executor, defaulting to in-process: steps of a run share
# one import of pandas, CatBoost and Great Expectations (a step process pays ~4-6 s each) and
# parallelism comes from concurrent runs. A run (or a job's config) picks the other with
# `execution: {config: {multiprocess: {max_concurrent: 2}}}`.
project_executor = multi_or_in_process_executor.configured(
    lambda config: config,
    name="in_process_or_multiprocess",
    config_schema=Field(multi_or_in_process_executor.config_schema.config_type, default_value={"in_process": {}}),
)


def build_definitions(executor: ExecutorDefinition | None = None) -> Definitions:
    """The defs folder with ``executor`` (a deployment's Celery or Kubernetes one) or the project's."""
    project = load_from_defs_folder(path_within_project=PROJECT_ROOT)
    return Definitions.merge(project, Definitions(executor=executor or project_executor))


defs = build_definitions()

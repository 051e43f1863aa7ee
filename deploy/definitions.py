"""The production code location: lead_assets' definitions, run by the executor the deployment names.

Everything the project defines (assets, checks, sensors, schedules, resources) comes unchanged
from ``lead_assets.definitions.build_definitions()``. ``LEAD_ASSETS_EXECUTOR``, read here only
(the project itself never reads it), chooses where the steps of a run execute, so the same
image runs on one host, on Celery workers or on Kubernetes:

    unset                       the project's own executor: in-process by default, multiprocess
                                when a run's config says `execution: {config: {multiprocess: {}}}`
    in_process / multiprocess   Dagster's executor of that name, for every run
    celery                      every step a Celery task (dagster-celery), run by whichever
                                `dagster-celery worker` takes it from the broker; broker, result
                                backend and Celery settings come from deploy/celery.yaml, which
                                the workers read too (DAGSTER_CELERY_BROKER_URL/_BACKEND_URL are
                                resolved when a run starts, not when this file loads)
    k8s                         every step in its own Kubernetes Job (dagster-k8s); image,
                                namespace, env and secrets come from the K8sRunLauncher
                                (deploy/k8s/); per-run settings (step resources, how many step
                                pods at once) through run config: deploy/k8s/executor-run-config.yaml

Load it with ``dagster code-server start -f deploy/definitions.py`` (see deploy/README.md) or
``dagster asset materialize -f deploy/definitions.py ...``. Executors that run steps outside the
run worker (celery, k8s) need the persistent PostgreSQL instance (deploy/dagster.yaml) and the
warehouse and landing folders on storage every worker sees (object storage or a shared volume).
"""

import os
from pathlib import Path

import yaml
from dagster import Definitions, ExecutorDefinition, in_process_executor, multiprocess_executor

VARIABLE = "LEAD_ASSETS_EXECUTOR"
EXECUTORS = ("in_process", "multiprocess", "celery", "k8s")
CELERY_YAML = Path(__file__).resolve().with_name("celery.yaml")


def celery_config() -> dict:
    """The `execution.config` block of deploy/celery.yaml: the workers start from the same file."""
    return yaml.safe_load(CELERY_YAML.read_text())["execution"]["config"]


def executor_kind(environ=None) -> str | None:
    environ = os.environ if environ is None else environ
    kind = (environ.get(VARIABLE) or "").strip().lower().replace("-", "_") or None
    if kind is not None and kind not in EXECUTORS:
        raise ValueError(f"{VARIABLE}={kind!r}: expected one of {', '.join(EXECUTORS)}")
    return kind


def executor_from_env(environ=None) -> ExecutorDefinition | None:
    """The executor this deployment adds, or None to keep the project's own."""
    kind = executor_kind(environ)
    if kind == "celery":
        from dagster_celery import celery_executor

        return celery_executor.configured(celery_config(), name="celery")
    if kind == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor  # unconfigured: run config may set its `execution.config`
    if kind == "multiprocess":
        return multiprocess_executor
    if kind == "in_process":
        return in_process_executor
    return None


def build_deployment_definitions(environ=None) -> Definitions:
    """The project's definitions with the executor this deployment names (or the project's own)."""
    from lead_assets.definitions import build_definitions

    return build_definitions(executor=executor_from_env(environ))


defs = build_deployment_definitions()

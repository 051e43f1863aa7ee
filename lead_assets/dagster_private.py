"""The private Dagster APIs the pre-warmed run launcher relies on: one module, one pin, one test.

``lead_assets.launcher.PrewarmedRunLauncher`` executes each run exactly as ``dagster api
execute_run`` does, which Dagster offers only through private modules. Everything the launcher
uses that is not public API comes from here, and ``lead_assets_tests/test_dagster_private.py``
fails loudly (naming what moved) when the installed Dagster is not the pinned one or a name or
signature below changed. The heavy ones are imported when a run needs them, not when Dagster
loads the launcher from ``dagster.yaml``. To run without any of this, go back to Dagster's own
launcher (README, "Back to Dagster's default run launcher").
"""

from __future__ import annotations

import importlib
import inspect

from dagster._core.launcher.base import CheckRunHealthResult, LaunchRunContext, RunLauncher, WorkerStatus
from dagster._serdes import ConfigurableClass, ConfigurableClassData

PINNED_DAGSTER = "1.13.27"

# module, name -> the parameters the launcher passes (None: a class or constant, only its presence)
CONTRACT: dict[tuple[str, str], tuple[str, ...] | None] = {
    ("dagster._cli.api", "_execute_run_command_body"): ("run_id", "instance", "write_stream_fn",
                                                        "set_exit_code_on_failure"),
    ("dagster._core.execution.retries", "auto_reexecution_should_retry_run"): ("instance", "run",
                                                                                "run_failure_reason"),
    ("dagster._utils.interrupts", "capture_interrupts"): (),
    ("dagster._serdes", "serialize_value"): None,
    ("dagster._serdes", "deserialize_value"): None,
    ("dagster._serdes", "ConfigurableClass"): None,
    ("dagster._serdes", "ConfigurableClassData"): None,
    ("dagster._core.errors", "DagsterLaunchFailedError"): None,
    ("dagster._core.storage.tags", "WILL_RETRY_TAG"): None,
    ("dagster._core.launcher.base", "RunLauncher"): None,
    ("dagster._core.launcher.base", "LaunchRunContext"): None,
    ("dagster._core.launcher.base", "CheckRunHealthResult"): None,
    ("dagster._core.launcher.base", "WorkerStatus"): None,
}
RUN_LAUNCHER_METHODS = ("launch_run", "terminate", "check_run_worker_health", "supports_check_run_worker_health",
                        "dispose")
WORKER_STATUSES = ("RUNNING", "FAILED", "SUCCESS")

__all__ = ["CheckRunHealthResult", "ConfigurableClass", "ConfigurableClassData", "LaunchRunContext", "RunLauncher",
           "WorkerStatus", "execute_run", "launch_failed", "should_retry", "will_retry_tag", "serialize_value",
           "deserialize_value", "capture_interrupts"]


def _private(module: str, name: str):
    return getattr(importlib.import_module(module), name)


def execute_run(run_id: str, instance) -> int:
    """``dagster api execute_run``'s body, in this process: the run's events go to the instance."""
    return _private("dagster._cli.api", "_execute_run_command_body")(run_id, instance, lambda event: None,
                                                                      set_exit_code_on_failure=False)


def launch_failed(message: str) -> Exception:
    return _private("dagster._core.errors", "DagsterLaunchFailedError")(message)


def should_retry(instance, failed_run) -> bool:
    """Dagster's own rule for whether a failed run is retried (run retries)."""
    return _private("dagster._core.execution.retries", "auto_reexecution_should_retry_run")(instance, failed_run, None)


def will_retry_tag() -> str:
    return _private("dagster._core.storage.tags", "WILL_RETRY_TAG")


def serialize_value(value) -> str:
    return _private("dagster._serdes", "serialize_value")(value)


def deserialize_value(text: str):
    return _private("dagster._serdes", "deserialize_value")(text)


def capture_interrupts():
    return _private("dagster._utils.interrupts", "capture_interrupts")()


def contract_problems() -> list[str]:
    """What differs from the Dagster this launcher was written against (empty: nothing)."""
    import dagster

    problems = []
    if dagster.__version__ != PINNED_DAGSTER:
        problems.append(f"dagster {dagster.__version__} is installed, the launcher was checked against "
                        f"{PINNED_DAGSTER}: re-check every entry of lead_assets.dagster_private.CONTRACT")
    for (module, name), parameters in CONTRACT.items():
        try:
            found = _private(module, name)
        except (ImportError, AttributeError) as error:
            problems.append(f"{module}.{name} is gone ({error})")
            continue
        if parameters is not None:
            actual = tuple(inspect.signature(found).parameters)
            if actual != parameters:
                problems.append(f"{module}.{name} now takes {actual}, the launcher passes {parameters}")
    problems += [f"RunLauncher.{m} is gone" for m in RUN_LAUNCHER_METHODS if not hasattr(RunLauncher, m)]
    problems += [f"WorkerStatus.{s} is gone" for s in WORKER_STATUSES if s not in WorkerStatus.__members__]
    return problems

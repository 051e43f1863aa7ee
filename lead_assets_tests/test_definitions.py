"""The code location: dg loads it from the defs folder, once, light, with its executor as configuration."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import AssetKey

pytestmark = pytest.mark.slow(seconds=10)  # started first by make test (conftest.py)

ROOT = Path(__file__).resolve().parents[1]


def test_definitions_have_the_public_asset_keys():
    from lead_assets.definitions import defs

    keys = set(defs.resolve_all_asset_keys())
    assert {AssetKey(k) for k in ("raw_leads", "cleaned_leads", "lead_features", "lead_scoring_model",
                                  "scored_leads")} <= keys
    graph = defs.resolve_asset_graph()
    for key in ("raw_leads", "cleaned_leads", "lead_features", "scored_leads"):
        node = graph.get(AssetKey(key))
        assert node.partitions_def is not None and node.backfill_policy is not None
        assert node.backfill_policy.max_partitions_per_run is None  # single run per range
    assert defs.resolve_sensor_def("inbox_sensor")


def dg(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "VIRTUAL_ENV": str(Path(sys.executable).parents[1])}
    return subprocess.run([str(Path(sys.executable).with_name("dg")), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_dg_lists_every_definition(lead_home):
    from lead_assets.definitions import defs

    result = dg("list", "defs", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    listed = json.loads(result.stdout)
    assert {a["asset_key"] for a in listed["assets"]} == {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert {s["name"] for s in listed["sensors"]} == {"inbox_sensor", "rescore_on_champion_change", "champion_promotion",
                                                     "performance_refresh", "retrain_on_outcomes"}
    assert {r["name"] for r in listed["resources"]} == set(defs.resources)


def test_nothing_is_loaded_twice():
    """Each definition comes from the one module under defs/ that defines it."""
    from lead_assets.definitions import defs

    objects = [*(defs.assets or []), *(defs.asset_checks or []), *(defs.sensors or []), *(defs.schedules or []),
               *(defs.jobs or [])]
    assert len({id(o) for o in objects}) == len(objects)
    names = [getattr(o, "name", None) for o in [*(defs.sensors or []), *(defs.schedules or []), *(defs.jobs or [])]]
    assert len(set(names)) == len(names)
    checks = [key for c in defs.asset_checks or [] for key in c.check_keys]
    assert len(set(checks)) == len(checks) == 7


def test_a_module_added_under_defs_is_loaded(tmp_path):
    """What `dg scaffold defs` writes under lead_assets/defs/ is part of the code location, unlisted."""
    copy = tmp_path / "project"
    shutil.copytree(ROOT / "lead_assets", copy / "lead_assets", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy)
    (copy / "lead_assets" / "defs" / "scaffolded.py").write_text(
        "import dagster as dg\n\n\n@dg.asset\ndef scaffolded_asset():\n    return 1\n")
    code = ("import lead_assets, lead_assets.definitions as d; "
            "print(lead_assets.__file__); print(sorted(k.to_user_string() for k in d.defs.resolve_all_asset_keys()))")
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], cwd=copy,
                         env={**os.environ, "PYTHONPATH": str(copy)}, capture_output=True, text=True, check=True,
                         timeout=300).stdout.splitlines()
    assert out[0].startswith(str(copy)), out[0]
    assert "scaffolded_asset" in out[1] and "raw_leads" in out[1]


def test_the_executor_is_configuration_not_environment():
    """In-process unless a run's config asks for multiprocess; LEAD_ASSETS_EXECUTOR is the deployment's."""
    code = ("from dagster import validate_run_config; from lead_assets.definitions import defs; "
            "job = defs.resolve_implicit_global_asset_job_def(); print(job.executor_def.name); "
            "print(sorted(validate_run_config(job, {})['execution']['in_process_or_multiprocess'])); "
            "print(sorted(validate_run_config(job, {'execution': {'config': {'multiprocess': {'max_concurrent': 2}}}})"
            "['execution']['in_process_or_multiprocess']))")
    env = {**os.environ, "LEAD_ASSETS_EXECUTOR": "no-such-executor"}
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=300).stdout.split()
    assert out == ["in_process_or_multiprocess", "['in_process']", "['multiprocess']"]


def test_code_location_import_is_light():
    code = ("import sys, lead_assets.definitions; "
            "print(','.join(m for m in ('mlflow','great_expectations','catboost','matplotlib','sklearn') "
            "if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == ""


STAGES = ("store", "inbox", "leads", "model", "scoring", "release", "outcomes")  # bottom to top
FOUNDATION = ("schema", "clock")


def test_each_core_stage_imports_only_the_foundation_and_the_stages_below_it():
    """core/<stage>/ may import core.schema, core.clock and the stages before it in STAGES (every
    import counts, those inside functions included); the foundation imports no stage."""
    import ast

    core = ROOT / "lead_assets" / "core"
    found = {p.name for p in core.iterdir() if p.is_dir() and not p.name.startswith("_")}
    assert found == set(STAGES), found
    assert {p.stem for p in core.glob("*.py")} == {"__init__", *FOUNDATION}
    rank = {stage: i + 1 for i, stage in enumerate(STAGES)} | dict.fromkeys(FOUNDATION, 0)
    wrong = []
    for path in sorted(core.rglob("*.py")):
        relative = path.relative_to(core).parts
        own = rank[relative[0]] if len(relative) > 1 else (rank.get(path.stem, -1))
        for node in ast.walk(ast.parse(path.read_text())):
            modules = ([node.module, *(f"{node.module}.{a.name}" for a in node.names)]
                       if isinstance(node, ast.ImportFrom) and node.module else
                       [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            for module in modules:
                parts = module.split(".")
                if parts[:2] != ["lead_assets", "core"] or len(parts) < 3 or parts[2] not in rank:
                    continue
                if rank[parts[2]] > own:
                    wrong.append(f"{'/'.join(relative)} imports {module}")
            if any(m.split(".")[0] == "dagster" or m.startswith("dagster_") for m in modules):
                wrong.append(f"{'/'.join(relative)} imports Dagster ({modules[0]}): the core stays free of it")
    assert not wrong, wrong


def test_the_package_has_no_import_circle():
    """No module of lead_assets reaches itself through its imports, type-only imports included
    (the circles that were: model <-> drift <-> scoring in defs/, core/model <-> core/evaluation,
    cli <-> demo)."""
    import ast

    package = ROOT / "lead_assets"
    files = sorted(package.rglob("*.py"))
    names = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p for p in files}
    imports = {name: set() for name in names}
    for name, path in names.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                targets = {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
            elif isinstance(node, ast.Import):
                targets = {a.name for a in node.names}
            else:
                continue
            imports[name] |= {t for t in targets if t in names and t != name and not name.startswith(t + ".")}

    def reaches(start: str, goal: str, seen: set) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in imports[start])

    circles = sorted(name for name in names if reaches(name, name, {name}))
    assert not circles, circles

"""Models pickled before the core was grouped by stage still load (registered versions, cached pickles)."""

import pickle

from lead_assets.core.model.cutoff import CutoffRule
from lead_assets.core.model.recipe import LeadModel


def test_a_pickle_naming_the_old_module_paths_loads_the_moved_classes():
    rule = CutoffRule.__new__(CutoffRule)
    model = LeadModel.__new__(LeadModel)
    data = pickle.dumps((rule, model), protocol=0)
    old = (data.replace(b"lead_assets.core.model.cutoff\n", b"lead_assets.core.cutoff\n")
           .replace(b"lead_assets.core.model.recipe\n", b"lead_assets.core.model\n"))
    assert b"lead_assets.core.cutoff\n" in old and b"lead_assets.core.model\nLeadModel" in old
    loaded_rule, loaded_model = pickle.loads(old)
    assert type(loaded_rule) is CutoffRule and type(loaded_model) is LeadModel


def test_the_old_registry_path_is_the_release_stage_module():
    import importlib

    from lead_assets.core.release import registry

    assert importlib.import_module("lead_assets.core.registry") is registry


def test_the_model_stage_answers_old_names_without_shadowing_its_submodules():
    """In a fresh interpreter each submodule imports by ``from lead_assets.core.model import ...``
    (the old-name lookup once recursed into itself for a submodule not yet imported)."""
    import subprocess
    import sys

    names = ["training", "judging", "backtest", "plots", "card", "file_evaluation", "cutoff", "recipe"]
    for name in names:
        code = f"from lead_assets.core.model import {name}; import lead_assets.core.model as m; print(m.LeadModel)"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and "recipe.LeadModel" in done.stdout, (name, done.stderr[-500:])

"""ModelRegistry: a champion version is loaded from MLflow once, then from its cached pickle."""

import logging

import numpy as np
import pytest

from lead_assets.core.model.recipe import TrainConfig
from lead_assets.core.model.training import train_model
from lead_assets.defs.resources import MODEL_CACHE, LeadHomeResource, ModelRegistry
from lead_assets_tests.factories import make_features

NAME = "lead_scoring_cache_test"


def test_a_champion_version_is_loaded_from_mlflow_once(lead_home, monkeypatch):
    pytest.importorskip("mlflow")
    from lead_assets.core.release import registry
    from lead_assets.core.store.experiments import use_experiment

    logging.getLogger("alembic").setLevel(logging.WARNING)
    result = train_model(make_features(n=1200, seed=8),
                         TrainConfig(iterations=20, min_iterations=10, early_stopping_rounds=10, thread_count=2))
    models = ModelRegistry(lead_home=LeadHomeResource(), model_name=NAME)
    models.connect()
    use_experiment("lead_scoring", lead_home)
    assert models.load_champion() is None
    first = registry.log_training(result, model_name=NAME)
    models.set_champion(first)

    model, version = models.load_champion()  # from MLflow, then cached
    assert version == first
    assert len(list((lead_home.warehouse / MODEL_CACHE).iterdir())) == 1

    def no_mlflow_load(name):
        raise AssertionError("the cached version should not be loaded from MLflow again")

    with monkeypatch.context() as patched:
        patched.setattr(registry, "load_champion", no_mlflow_load)
        cached, again = models.load_champion()
    assert again == first
    np.testing.assert_allclose(cached.predict_proba(result.holdout), model.predict_proba(result.holdout))

    second = registry.log_training(result, model_name=NAME)
    models.set_champion(second)
    assert models.load_champion()[1] == second  # the alias moved: the new version, loaded and cached
    assert len(list((lead_home.warehouse / MODEL_CACHE).iterdir())) == 2

"""One sensor interval for every sensor, from the environment (a replay through `dagster dev`)."""

import os
import subprocess
import sys

import pytest

from lead_assets.defs import ticks


def test_each_sensor_keeps_its_own_interval_unless_the_environment_sets_one(monkeypatch):
    monkeypatch.delenv(ticks.INTERVAL_ENV, raising=False)
    assert ticks.every(60) == 60
    monkeypatch.setenv(ticks.INTERVAL_ENV, "5")
    assert ticks.every(60) == 5 and ticks.every(30) == 5
    code = ("from lead_assets.definitions import defs; "
            "print(sorted((s.name, s.minimum_interval_seconds) for s in defs.sensors))")
    env = {k: v for k, v in os.environ.items() if k != ticks.INTERVAL_ENV}
    shipped = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    fast = subprocess.run([sys.executable, "-c", code], env={**env, ticks.INTERVAL_ENV: "5"}, capture_output=True,
                          text=True, check=True)  # read when the code location loads
    assert "('retrain_on_outcomes', 60)" in shipped.stdout and "('inbox_sensor', 5)" in shipped.stdout
    assert "('retrain_on_outcomes', 5)" in fast.stdout and "('rescore_on_champion_change', 5)" in fast.stdout


@pytest.mark.parametrize("text", ["0", "-3", "soon"])
def test_a_bad_interval_names_the_variable(monkeypatch, text):
    monkeypatch.setenv(ticks.INTERVAL_ENV, text)
    with pytest.raises(ValueError, match=f"LEAD_ASSETS_SENSOR_INTERVAL_SECONDS='{text}'"):
        ticks.every(60)

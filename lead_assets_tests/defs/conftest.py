import pytest
from dagster import instance_for_test


@pytest.fixture
def instance(lead_home):
    """An ephemeral Dagster instance (telemetry off) per test."""
    with instance_for_test(overrides={"telemetry": {"enabled": False}}) as inst:
        yield inst

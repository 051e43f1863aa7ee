"""OutcomePolicy: how outcomes become labels, and when they ask for a retrain (the ``outcome_policy`` resource)."""

import os

from dagster import ConfigurableResource, EnvVar
from pydantic import Field


class OutcomePolicy(ConfigurableResource):
    """How outcomes become labels, and when realised performance or new outcomes ask for a retrain."""

    label_maturity_days: int | None = Field(
        None, description="Off (None) by default. When set, a lead older than this many days with no recorded "
                          "completion counts as a negative for training and performance; a younger lead never does.")
    performance_min_labelled: int = Field(
        200, description="Labelled leads a version needs before its realised precision/recall can warn or retrain.")
    retrain_min_new_outcomes: int = Field(
        1000, description="Outcomes arrived since the champion was trained that start a retrain (0: never).")
    first_training_min_labelled: int = Field(
        2000, description="Labelled leads (outcomes in force) at which a deployment with no champion trains its "
                          "first model by itself; a first model the gate refused is tried again after "
                          "retrain_min_new_outcomes more outcomes (0: never train without a click).")
    retrain_on_underperformance: bool = Field(
        True, description="Start a retrain when the champion's realised precision or recall is below target.")
    recalibration_min_outcomes: int = Field(
        300, description="Outcomes of leads the champion was not trained on at which its probabilities are refit "
                         "on them (core.model.recalibration; 0: never recalibrate, serve the training's calibration).")
    recalibration_window_days: int = Field(
        30, description="Days of the latest such outcomes (by lead creation) a recalibration is fitted on.")

    @classmethod
    def from_environment(cls):
        """Each setting from its ``LEAD_ASSETS_*`` variable when the deployment sets it."""
        names = {"label_maturity_days": "LEAD_ASSETS_LABEL_MATURITY_DAYS",
                 "performance_min_labelled": "LEAD_ASSETS_PERFORMANCE_MIN_LABELLED",
                 "retrain_min_new_outcomes": "LEAD_ASSETS_RETRAIN_MIN_NEW_OUTCOMES",
                 "first_training_min_labelled": "LEAD_ASSETS_FIRST_TRAINING_MIN_LABELLED",
                 "recalibration_min_outcomes": "LEAD_ASSETS_RECALIBRATION_MIN_OUTCOMES",
                 "recalibration_window_days": "LEAD_ASSETS_RECALIBRATION_WINDOW_DAYS"}
        return cls(**{field: EnvVar.int(name) for field, name in names.items() if os.environ.get(name, "").strip()})

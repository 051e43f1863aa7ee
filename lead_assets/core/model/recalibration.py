"""Calibration that follows the outcomes: a champion's probabilities refit on its own matured leads.

A model's calibrator is fitted on its validation slice when it is trained; as the conversion
rate moves (0.53 to 0.46 on the real history) a champion that keeps serving drifts away from
what its probabilities say (the replay measured calibration errors of 0.07-0.09 per month for a
champion left to serve two months). The outcomes that arrive after a version was trained are
leads it never saw labelled, so they are a fair sample to correct it on without retraining:

* the sample: the leads created after the version's ``trained_until`` whose outcome is known
  now, the latest ``window_days`` days of them (older ones describe an older conversion rate);
* the correction: Platt scaling of the version's own probability, ``sigmoid(a * logit(p) + b)``
  (two parameters: it keeps the ranking, so every lead keeps its place, and the junk cut-off,
  a share of the trailing window's leads, flags the same leads; hot and warm, thresholds on the
  probability, follow the corrected probability);
* fitted only with at least ``min_outcomes`` outcomes of both kinds; until then the version's
  own calibration is served unchanged.

Chosen on the replay's months up to 2021-10 (BENCHMARKS.md, "Calibration that follows the
outcomes"): Platt beat an intercept-only shift and an isotonic map (which overfitted a few
thousand outcomes); the window's length made no difference there and was left at 30 days.
Every fit is recorded per version (:class:`Recalibration`), and every scoring run says which one it used.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from upath import UPath

from lead_assets.core.model.recipe import Calibrator
from lead_assets.core.schema import CREATED_DATE, LABEL

DEFAULT_WINDOW_DAYS = 30
DEFAULT_MIN_OUTCOMES = 300
FOLDER = "recalibrations"
EPSILON = 1e-6


def logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), EPSILON, 1 - EPSILON)
    return np.log(p / (1 - p))


@dataclass(frozen=True)
class Recalibration:
    """One refit of a version's probabilities, and the leads it was fitted on."""

    version: str
    fitted_at: str  # UTC, ISO 8601
    slope: float
    intercept: float
    outcomes: int
    positives: int
    since: str  # creation days of the leads it was fitted on
    until: str
    calibration_error_before: float  # on those leads, by decile (what the correction fixes)
    calibration_error_after: float

    @property
    def name(self) -> str:
        return f"v{self.version} refit {self.fitted_at}"

    def apply(self, probability) -> np.ndarray:
        return Calibrator("sigmoid", slope=self.slope, intercept=self.intercept)(logit(probability))

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Recalibration:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in fields})


@dataclass(frozen=True)
class Recalibrated:
    """A calibrator followed by a :class:`Recalibration` (what a recalibrated model scores with)."""

    base: Any
    recalibration: Recalibration
    base_threshold: float  # the model's own fallback threshold, before the refit

    def __call__(self, raw) -> np.ndarray:
        return self.recalibration.apply(self.base(raw))


def recalibrated(model, recalibration: Recalibration | None):
    """``model`` (a ``LeadModel``) scoring through ``recalibration``; itself when there is none.

    The fallback threshold maps through the same function, so the fixed-threshold rule flags the
    same leads as before; the trailing-share cut-off needs nothing (it is a rank).
    """
    if recalibration is None:
        return model
    own = model.calibrator
    base, base_threshold = (own.base, own.base_threshold) if isinstance(own, Recalibrated) else (own, model.threshold)
    threshold = float(recalibration.apply(base_threshold))
    cutoff = dataclasses.replace(model.cutoff, threshold=threshold) if model.cutoff is not None else None
    return dataclasses.replace(model, calibrator=Recalibrated(base, recalibration, float(base_threshold)),
                               threshold=threshold, cutoff=cutoff)


def matured_sample(labelled: pd.DataFrame, trained_until: str | None,
                   window_days: int = DEFAULT_WINDOW_DAYS) -> pd.DataFrame:
    """The labelled leads created after ``trained_until``, the latest ``window_days`` days of them.

    ``labelled``: at least ``created_date`` and the label as known now (maturity applied); rows
    without a label are left out.
    """
    known = labelled[labelled[LABEL].notna().to_numpy() & labelled[CREATED_DATE].notna().to_numpy()]
    if trained_until:
        known = known[(known[CREATED_DATE] >= pd.Timestamp(trained_until) + pd.Timedelta(days=1)).to_numpy()]
    if known.empty:
        return known
    newest = known[CREATED_DATE].max().normalize()
    return known[(known[CREATED_DATE] >= newest - pd.Timedelta(days=window_days - 1)).to_numpy()]


def fit(version: str, probability, y, created: pd.Series, fitted_at: str,
        min_outcomes: int = DEFAULT_MIN_OUTCOMES) -> Recalibration | str:
    """The Platt refit of ``probability`` on the outcomes ``y`` (the training's own sigmoid
    calibrator, fitted on the log-odds); a reason (str) when there are too few."""
    from lead_assets.core.model.judging import calibration_by_decile

    y = np.asarray(y, dtype=float)
    p = np.asarray(probability, dtype=float)
    positives = int(y.sum())
    waiting = waiting_reason(version, len(y), positives, min_outcomes)
    if waiting:
        return waiting
    fitted = Calibrator.fit(logit(p), y, "sigmoid")
    days = pd.to_datetime(created)
    recalibration = Recalibration(
        version=str(version), fitted_at=fitted_at, slope=fitted.slope,
        intercept=fitted.intercept, outcomes=len(y), positives=positives,
        since=days.min().strftime("%Y-%m-%d"), until=days.max().strftime("%Y-%m-%d"),
        calibration_error_before=calibration_by_decile(y, p)[0], calibration_error_after=0.0)
    after = calibration_by_decile(y, recalibration.apply(p))[0]
    return dataclasses.replace(recalibration, calibration_error_after=after)


def waiting_reason(version: str, outcomes: int, positives: int, min_outcomes: int) -> str | None:
    """Why ``version`` cannot be refit on this sample yet (None: it can)."""
    if outcomes >= max(min_outcomes, 2) and 0 < positives < outcomes:
        return None
    return (f"{outcomes} outcomes of leads version {version} was not trained on ({positives} completed): "
            f"recalibrates at {min_outcomes}, with both outcomes among them")


def _path(root: UPath, version: str) -> UPath:
    return root / FOLDER / f"v{version}.json"


def history(root: UPath, version: str) -> list[Recalibration]:
    """Every refit of ``version``, oldest first."""
    path = _path(root, str(version))
    if not path.exists():
        return []
    return [Recalibration.from_dict(r) for r in json.loads(path.read_text())]


def latest(root: UPath, version: str) -> Recalibration | None:
    """The refit in force for ``version`` (None: its own calibration)."""
    fits = history(root, version)
    return fits[-1] if fits else None


def record(root: UPath, recalibration: Recalibration) -> None:
    """Append a refit to its version's history (one file per version, replaced whole)."""
    from lead_assets.core.store import warehouse

    fits = [r.as_dict() for r in history(root, recalibration.version)] + [recalibration.as_dict()]
    warehouse.atomic_write_bytes(_path(root, recalibration.version), json.dumps(fits, indent=1).encode())


def same_sample(previous: Recalibration | None, outcomes: int, positives: int, since: str, until: str) -> bool:
    """The sample a refit would use is the one the latest refit used (nothing to refit)."""
    return previous is not None and (previous.outcomes, previous.positives, previous.since, previous.until) == (
        outcomes, positives, since, until)

"""The one rule for training without a click: a first model, a retrain, a refused training tried again."""

import pandas as pd

from lead_assets.core.outcomes import ATTACHED_SEQ, LABEL_CHANGED
from lead_assets.core.performance import ALL_WEEKS
from lead_assets.core.schema import LABEL, OUTCOME_SEQ
from lead_assets.defs.performance import latest_attempt, retrain_decision
from lead_assets.defs.policy import OutcomePolicy


def history(labelled: int, seq: int = 1, start: int = 0) -> pd.DataFrame:
    """``labelled`` outcomes in force, each a new outcome, landed at ledger position ``seq``."""
    return pd.DataFrame({OUTCOME_SEQ: [seq] * labelled, ATTACHED_SEQ: [seq] * labelled,
                         LABEL_CHANGED: [True] * labelled, "current": [True] * labelled,
                         LABEL: [(start + i) % 2 for i in range(labelled)]})


def performance(champion: str, since: int, precision: float = 0.8) -> pd.DataFrame:
    return pd.DataFrame([{"model_version": champion, "week": ALL_WEEKS, "leads_with_outcome": 1000,
                          "precision": precision, "recall": 0.8, "outcomes_since_training": since}])


POLICY = OutcomePolicy(first_training_min_labelled=100, retrain_min_new_outcomes=50)


def test_a_first_model_trains_once_enough_outcomes_are_in_force():
    key, why = retrain_decision(None, None, history(99), {}, POLICY)
    assert key is None and "99 labelled leads" in why and "starts at 100" in why
    key, why = retrain_decision(None, None, history(100), {}, POLICY)
    assert key == "first-training" and "100 labelled leads" in why
    events = pd.concat([history(100), history(100).assign(current=False)], ignore_index=True)
    assert retrain_decision(None, None, events, {}, POLICY)[0] == "first-training"  # superseded events do not count
    key, why = retrain_decision(None, None, history(10_000), {}, OutcomePolicy(first_training_min_labelled=0))
    assert key is None and "first_training_min_labelled is 0" in why


def test_a_refused_first_model_is_tried_again_after_enough_new_outcomes():
    refused = {"1": {"ledger_seq": 5, "trained_until": "2021-08-31"}}
    waiting = pd.concat([history(100, seq=5), history(49, seq=6)], ignore_index=True)
    key, why = retrain_decision(None, None, waiting, refused, POLICY)
    assert key is None and "version 1 was refused" in why and "49 new outcomes" in why
    enough = pd.concat([history(100, seq=5), history(50, seq=6)], ignore_index=True)
    key, why = retrain_decision(None, None, enough, refused, POLICY)
    assert key == "first-training-after-v1" and "50 new outcomes since refused version 1" in why
    twice = {**refused, "2": {"ledger_seq": 6}}
    assert retrain_decision(None, None, enough, twice, POLICY)[0] is None  # nothing new since version 2
    never = OutcomePolicy(first_training_min_labelled=100, retrain_min_new_outcomes=0)
    assert "never" in retrain_decision(None, None, enough, refused, never)[1]


def test_a_champion_is_retrained_once_per_reason_and_a_refused_challenger_after_new_outcomes():
    profiles = {"1": {"ledger_seq": 5}}
    assert retrain_decision("1", None, history(10), profiles, POLICY)[0] is None
    key, why = retrain_decision("1", performance("1", since=10), history(10, seq=9), profiles, POLICY)
    assert key is None and "meets its targets" in why
    key, _ = retrain_decision("1", performance("1", since=60), history(60, seq=9), profiles, POLICY)
    assert key == "retrain-v1-new_outcomes"
    key, _ = retrain_decision("1", performance("1", since=60, precision=0.5), history(60, seq=9), profiles, POLICY)
    assert key == "retrain-v1-below_target+new_outcomes"
    challenger = {**profiles, "2": {"ledger_seq": 9}}  # trained after the champion, not promoted
    outcomes = pd.concat([history(60, seq=9), history(49, seq=10)], ignore_index=True)
    key, why = retrain_decision("1", performance("1", since=109), outcomes, challenger, POLICY)
    assert key is None and "version 2 was refused" in why
    outcomes = pd.concat([history(60, seq=9), history(50, seq=10)], ignore_index=True)
    key, why = retrain_decision("1", performance("1", since=110), outcomes, challenger, POLICY)
    assert key == "retrain-v1-after-v2-new_outcomes" and "since refused version 2" in why


def test_the_latest_attempt_is_the_newest_ledger_position_then_the_newest_version():
    assert latest_attempt({}) is None
    assert latest_attempt({"3": {"ledger_seq": 4}, "10": {"ledger_seq": 4}, "2": {"ledger_seq": 1}}) == ("10", 4)

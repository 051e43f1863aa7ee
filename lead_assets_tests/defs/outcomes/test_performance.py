"""The one rule for training without a click: a first model, a retrain, a refused training tried again."""

import pandas as pd
import pytest
from dagster import DagsterRun, DagsterRunStatus, build_sensor_context, instance_for_test

from lead_assets.core.leads.labels import ATTACHED_SEQ, LABEL_CHANGED
from lead_assets.core.outcomes.realised import ALL_WEEKS
from lead_assets.core.schema import LABEL, OUTCOME_SEQ
from lead_assets.defs.outcomes.performance import latest_attempt, retrain_decision, retrain_on_outcomes
from lead_assets.defs.policy import OutcomePolicy
from lead_assets.defs.resources import LeadHomeResource, ModelRegistry


def history(labelled: int, seq: int = 1, start: int = 0, months: tuple[str, ...] = ("2021-07", "2021-08")
            ) -> pd.DataFrame:
    """``labelled`` outcomes in force, each a new outcome, landed at ledger position ``seq``, of leads
    created in ``months`` in turn."""
    return pd.DataFrame({OUTCOME_SEQ: [seq] * labelled, ATTACHED_SEQ: [seq] * labelled,
                         LABEL_CHANGED: [True] * labelled, "current": [True] * labelled,
                         LABEL: [(start + i) % 2 for i in range(labelled)],
                         "day": [f"{months[i % len(months)]}-10" for i in range(labelled)]})


def performance(champion: str, since: int, precision: float = 0.8) -> pd.DataFrame:
    return pd.DataFrame([{"model_version": champion, "week": ALL_WEEKS, "leads_with_outcome": 1000,
                          "precision": precision, "recall": 0.8, "outcomes_since_training": since}])


def decide(champion, table, events, profiles, policy):
    return retrain_decision(champion, table, lambda: events, profiles, policy)


POLICY = OutcomePolicy(first_training_min_labelled=300, retrain_min_new_outcomes=50)


def test_a_first_model_trains_once_enough_outcomes_are_in_force():
    key, why = decide(None, None, history(299), {}, POLICY)
    assert key is None and "299 labelled leads" in why and "starts at 300" in why
    key, why = decide(None, None, history(300), {}, POLICY)
    assert key == "first-training" and "300 labelled leads" in why
    events = pd.concat([history(300), history(300).assign(current=False)], ignore_index=True)
    assert decide(None, None, events, {}, POLICY)[0] == "first-training"  # superseded events do not count
    key, why = decide(None, None, history(10_000), {}, OutcomePolicy(first_training_min_labelled=0))
    assert key is None and "first_training_min_labelled is 0" in why


def test_a_first_model_waits_for_a_month_to_be_judged_on():
    """A backtest needs a labelled month after the first with min_backtest_leads (100) leads: before
    that a training can only fail (its run key would then be spent), so the decision waits."""
    one_month = history(5_000, months=("2021-07",))
    key, why = decide(None, None, one_month, {}, POLICY)
    assert key is None and "no labelled month after the first with 100 leads" in why and "2021-07 5000" in why
    thin = pd.concat([one_month, history(99, months=("2021-08",))], ignore_index=True)
    assert decide(None, None, thin, {}, POLICY)[0] is None
    judged = pd.concat([one_month, history(100, months=("2021-08",))], ignore_index=True)
    assert decide(None, None, judged, {}, POLICY)[0] == "first-training"


def test_a_refused_first_model_is_tried_again_after_enough_new_outcomes():
    refused = {"1": {"ledger_seq": 5, "trained_until": "2021-08-31"}}
    waiting = pd.concat([history(300, seq=5), history(49, seq=6)], ignore_index=True)
    key, why = decide(None, None, waiting, refused, POLICY)
    assert key is None and "version 1 was refused" in why and "49 new outcomes" in why
    enough = pd.concat([history(300, seq=5), history(50, seq=6)], ignore_index=True)
    key, why = decide(None, None, enough, refused, POLICY)
    assert key == "first-training-after-v1" and "50 new outcomes since refused version 1" in why
    twice = {**refused, "2": {"ledger_seq": 6}}
    assert decide(None, None, enough, twice, POLICY)[0] is None  # nothing new since version 2
    never = OutcomePolicy(first_training_min_labelled=300, retrain_min_new_outcomes=0)
    assert "never" in decide(None, None, enough, refused, never)[1]


def test_a_champion_is_retrained_once_per_reason_and_a_refused_challenger_after_new_outcomes():
    profiles = {"1": {"ledger_seq": 5}}
    assert decide("1", None, history(10), profiles, POLICY)[0] is None
    key, why = decide("1", performance("1", since=10), history(10, seq=9), profiles, POLICY)
    assert key is None and "meets its targets" in why
    key, _ = decide("1", performance("1", since=60), history(60, seq=9), profiles, POLICY)
    assert key == "retrain-v1-new_outcomes"
    key, _ = decide("1", performance("1", since=60, precision=0.5), history(60, seq=9), profiles, POLICY)
    assert key == "retrain-v1-below_target+new_outcomes"
    challenger = {**profiles, "2": {"ledger_seq": 9}}  # trained after the champion, not promoted
    outcomes = pd.concat([history(60, seq=9), history(49, seq=10)], ignore_index=True)
    key, why = decide("1", performance("1", since=109), outcomes, challenger, POLICY)
    assert key is None and "version 2 was refused" in why
    outcomes = pd.concat([history(60, seq=9), history(50, seq=10)], ignore_index=True)
    key, why = decide("1", performance("1", since=110), outcomes, challenger, POLICY)
    assert key == "retrain-v1-after-v2-new_outcomes" and "since refused version 2" in why


def test_the_latest_attempt_is_the_newest_ledger_position_then_the_newest_version():
    assert latest_attempt({}) is None
    assert latest_attempt({"3": {"ledger_seq": 4}, "10": {"ledger_seq": 4}, "2": {"ledger_seq": 1}}) == ("10", 4)


def test_outcome_history_is_read_only_when_the_decision_needs_it():
    def unread():
        raise AssertionError("outcome_history read for a champion that is the latest training")

    key, _ = retrain_decision("1", performance("1", since=60), unread, {"1": {"ledger_seq": 5}}, POLICY)
    assert key == "retrain-v1-new_outcomes"
    with pytest.raises(AssertionError, match="outcome_history read"):
        retrain_decision(None, None, unread, {}, POLICY)


def test_nothing_is_decided_while_inbox_runs_are_queued_or_running(lead_home):
    with instance_for_test() as instance:
        instance.add_run(DagsterRun(job_name="__ASSET_JOB", run_id="inbox-run", status=DagsterRunStatus.STARTED,
                                    tags={"dagster/sensor_name": "inbox_sensor"}))
        resources = {"lead_home": LeadHomeResource(), "model_registry": ModelRegistry(lead_home=LeadHomeResource()),
                     "outcome_policy": POLICY}
        with build_sensor_context(instance=instance, resources=resources) as context:
            result = retrain_on_outcomes.evaluate_tick(context)
        assert result.run_requests == [] and "1 inbox run(s) queued or in progress" in result.skip_message
        instance.delete_run("inbox-run")  # the run is gone: the decision is made again
        with build_sensor_context(instance=instance, resources=resources) as context:
            result = retrain_on_outcomes.evaluate_tick(context)
        assert result.run_requests == [] and "no champion yet: 0 labelled leads" in result.skip_message

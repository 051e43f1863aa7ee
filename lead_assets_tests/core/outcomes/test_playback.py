"""The replay's plan (what lands when) and its report (what sales were shown, month by month)."""

import numpy as np
import pandas as pd
import pytest

from lead_assets.core.outcomes import playback
from lead_assets.core.schema import CREATED_DATE, LABEL, LEAD_ID, OUTCOME_AT


def _history(tmp_path, rows: list[tuple[str, str]], name="history.csv", with_id=False):
    frame = pd.DataFrame({"": range(len(rows)), CREATED_DATE: [r[0] for r in rows], "city_mapped": "Mumbai",
                          LABEL: [r[1] for r in rows]})
    if with_id:
        frame.insert(1, LEAD_ID, [f"L{i}" for i in range(len(rows))])
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def test_every_lead_arrives_once_unlabelled_and_its_outcome_label_delay_days_later(tmp_path):
    days = pd.date_range("2021-07-01 09:30", "2021-09-20 09:30", freq="D")
    path = _history(tmp_path, [(d.strftime("%Y-%m-%d %H:%M:%S"), str(i % 2)) for i, d in enumerate(days)])
    history = playback.read_history(path)
    steps = list(playback.plan(history, step_days=15, label_delay_days=14))
    assert [s.now for s in steps][:2] == [pd.Timestamp("2021-07-16"), pd.Timestamp("2021-07-31")]
    assert steps[-1].now > days[-1] >= steps[-2].now  # the last step brings the last lead
    arrived = pd.concat([s.leads.assign(now=s.now) for s in steps])
    assert sorted(arrived[LEAD_ID]) == sorted(history[LEAD_ID]) and arrived[LEAD_ID].is_unique
    assert LABEL not in arrived.columns and "" not in arrived.columns  # no label, no exporter index
    created = pd.to_datetime(arrived[CREATED_DATE])
    assert ((created < arrived["now"]) & (created >= arrived["now"] - pd.Timedelta(days=15))).all()
    outcomes = pd.concat([s.outcomes.assign(now=s.now) for s in steps])
    assert outcomes[LEAD_ID].is_unique and list(outcomes.columns) == [LEAD_ID, LABEL, OUTCOME_AT, "now"]
    merged = outcomes.merge(history[[LEAD_ID, CREATED_DATE, LABEL]], on=LEAD_ID, suffixes=("", "_source"))
    assert (merged[LABEL] == merged[f"{LABEL}_source"]).all()
    at = pd.to_datetime(merged[OUTCOME_AT])
    assert (at == pd.to_datetime(merged[CREATED_DATE]) + pd.Timedelta(days=14)).all()
    assert ((at < merged["now"]) & (at >= merged["now"] - pd.Timedelta(days=15))).all()
    known = playback.arrivals(history, 15).merge(arrived[[LEAD_ID, "now"]], on=LEAD_ID)
    assert (known[playback.ARRIVED_AT] == known["now"]).all()  # the report's arrival is the plan's


def test_a_history_it_cannot_place_in_time_is_refused_naming_file_and_row(tmp_path):
    bad_date = _history(tmp_path, [("2021-07-01 10:00:00", "1"), ("31/31/2021", "0")], "bad_date.csv")
    with pytest.raises(ValueError, match=r"bad_date.csv: row 3 .*'31/31/2021' is not a date"):
        playback.read_history(bad_date)
    bad_label = _history(tmp_path, [("2021-07-01 10:00:00", "1"), ("2021-07-02 10:00:00", "yes")], "bad_label.csv")
    with pytest.raises(ValueError, match=r"bad_label.csv: row 3: app_complete_flag 'yes' is not 0 or 1"):
        playback.read_history(bad_label)
    unlabelled = tmp_path / "unlabelled.csv"
    pd.DataFrame({CREATED_DATE: ["2021-07-01"]}).to_csv(unlabelled, index=False)
    with pytest.raises(ValueError, match="unlabelled.csv: a replay needs a labelled history; missing column"):
        playback.read_history(unlabelled)
    given = playback.read_history(_history(tmp_path, [("2021-07-01 10:00:00", "1")], "ids.csv", with_id=True))
    assert given[LEAD_ID].tolist() == ["L0"]  # a file's own ids are kept


def _brute_best(y, p, recall):
    best = np.nan
    for t in np.unique(p):
        kept = p >= t
        if y[kept].sum() / y.sum() >= recall:
            best = np.nanmax([best, y[kept].mean()])
    return best


def test_best_precision_at_recall_is_the_best_single_cut_off():
    rng = np.random.default_rng(4)
    for _ in range(20):
        y = rng.integers(0, 2, 300)
        p = np.round(rng.random(300) * 0.5 + 0.3 * y, 2)  # ties on purpose
        assert playback.best_precision_at_recall(y, p, 0.75) == pytest.approx(_brute_best(y, p, 0.75))
    assert np.isnan(playback.best_precision_at_recall(np.zeros(5), np.ones(5), 0.75))


def _shown():
    arrived = pd.DataFrame({LEAD_ID: ["a", "b", "c", "d", "e"],
                            CREATED_DATE: pd.to_datetime(["2021-09-01", "2021-09-02", "2021-09-03", "2021-10-01",
                                                          "2021-10-02"]),
                            LABEL: [1, 0, 1, 1, 0],
                            playback.ARRIVED_AT: pd.to_datetime(["2021-09-10"] * 3 + ["2021-10-10"] * 2)})
    served = pd.DataFrame({LEAD_ID: ["a", "a", "b", "c", "d", "e"],
                           "probability": [0.9, 0.1, 0.2, 0.8, 0.7, 0.6], "cutoff": [0.5] * 6,
                           "bucket": ["hot", "junk", "junk", "hot", "warm", "warm"],
                           "model_version": ["1", "2", "1", "1", "2", "2"],
                           "served_at": pd.to_datetime(["2021-09-10", "2021-09-25", "2021-09-10",
                                                        "2021-09-10 00:00:05", "2021-10-10", "2021-10-10"],
                                                       format="ISO8601")})
    return playback.shown_on_arrival(arrived, served)


def test_what_sales_saw_is_each_leads_first_score_served_when_it_arrived():
    shown = _shown()
    first = shown.set_index(LEAD_ID)
    assert first.loc["a", "model_version"] == "1" and first.loc["a", "probability"] == 0.9  # not the rescore
    assert first["on_arrival"].tolist() == [True, True, False, True, True]  # c: scored seconds later, by a rescore
    months = playback.monthly(shown, frozen=pd.DataFrame({LEAD_ID: list("abde"), "probability": [0.2, 0.6, 0.9, 0.1],
                                                        "cutoff": [0.5] * 4}))
    sept, octo = months.iloc[0], months.iloc[1]
    assert sept["month"] == "2021-09" and sept["leads"] == 3 and sept["scored_on_arrival"] == pytest.approx(2 / 3)
    assert sept["versions"] == "v1 2" and octo["versions"] == "v2 2"
    assert sept["precision"] == 1.0 and sept["recall"] == 1.0 and sept["auc"] == 1.0  # a (0.9, 1), b (0.2, 0)
    assert sept["frozen_precision"] == 0.0 and sept["frozen_recall"] == 0.0  # a 0.2 junk, b 0.6 flagged
    assert octo["precision"] == 0.5 and octo["frozen_auc"] == 1.0


def test_a_month_holds_the_targets_or_comes_within_slack_of_the_best_any_cut_off_reached():
    months = pd.DataFrame({"recall": [0.80, 0.80, 0.80, 0.70],
                           "precision": [0.66, 0.61, 0.59, 0.70],
                           "best_precision_at_target_recall": [0.70, 0.62, 0.62, 0.75]})
    assert playback.month_verdicts(months).tolist() == [True, True, False, False]


def test_the_calibration_error_chance_leaves_shrinks_with_the_leads_and_is_below_a_real_miscalibration():
    from lead_assets.core.model.judging import calibration_by_decile

    rng = np.random.default_rng(4)
    p = rng.uniform(0.05, 0.95, 4000)
    many, few = playback.calibration_error_if_calibrated(p), playback.calibration_error_if_calibrated(p[:400])
    assert 0.005 < many < 0.03 and few > 2 * many  # about 1 / sqrt(leads)
    assert playback.calibration_error_if_calibrated(p) == many  # seeded: the report is reproducible
    shifted = rng.binomial(1, np.clip(p - 0.08, 0, 1)).astype(float)  # outcomes 0.08 below what is said
    assert calibration_by_decile(shifted, p)[0] > many + 0.04
    assert np.isnan(playback.calibration_error_if_calibrated(np.array([])))

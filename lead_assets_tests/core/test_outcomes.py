"""Outcomes that arrive after the lead: attached to it, never a second lead, conflicts reported."""

from datetime import date

import pandas as pd
import pytest

from lead_assets.core import inbox, landed, outcomes
from lead_assets.core.ingest import parse_outcome_file
from lead_assets.core.schema import CREATED_DATE, LABEL, LEAD_ID, OUTCOME_AT, OUTCOME_SEQ, OUTCOME_SOURCE
from lead_assets_tests.factories import raw_leads

FIRST, TODAY = date(2021, 7, 1), date(2026, 11, 24)
DAY = "2021-07-05"


def _land(home, name, frame=None, text=None):
    path = home.inbox / name
    if text is not None:
        path.write_text(text)
    else:
        frame.to_csv(path.path, index=False)
    entry = inbox.receive(home, path, FIRST, TODAY)
    assert entry.status == "accepted", entry.detail
    return entry


def _day(home, *days):
    return landed.leads_for_days(home, list(days or [DAY]), FIRST, TODAY)


def _outcomes_csv(rows):
    return "lead_id,app_complete_flag,outcome_at\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows)


def test_a_narrow_outcomes_file_is_recognised_by_its_columns_and_has_no_days_of_its_own(lead_home):
    entry = _land(lead_home, "crm.csv", text=_outcomes_csv([("a1", 1, ""), ("a2", 0, "2021-07-20")]))
    assert (entry.kind, entry.days, entry.rows_read) == ("outcomes", {}, 2)
    record = inbox.read_index(lead_home)[0][-1]
    assert record.kind == "outcomes" and record.status == "accepted"
    assert [e.file for e in inbox.landed_entries(lead_home)] == []  # not a lead file
    assert [e.file for e in inbox.landed_entries(lead_home, kind="outcomes")] == ["crm.csv"]


def test_a_file_without_created_date_that_is_not_an_outcomes_file_is_still_refused(lead_home):
    path = lead_home.inbox / "broken.csv"
    path.write_text("lead_id,app_complete_flag,city_mapped\nx,1,pune\n")
    entry = inbox.receive(lead_home, path, FIRST, TODAY)
    assert entry.status == "quarantined" and entry.rule == "missing_columns"


def test_outcomes_attach_to_the_lead_already_ingested_on_its_own_day(lead_home):
    leads = raw_leads(3, DAY, labelled=False).assign(lead_id=["a1", "a2", "a3"])
    _land(lead_home, "leads.csv", leads)
    before = _day(lead_home).leads
    assert before[LABEL].isna().all()
    _land(lead_home, "crm.csv", text=_outcomes_csv([("a1", 1, ""), ("a2", 0, "2021-07-20 10:00:00")]))
    found = _day(lead_home)
    after = found.leads.set_index(LEAD_ID)
    assert len(after) == 3 and after.index.is_unique
    assert after[LABEL].astype("Float64").fillna(-1).to_dict() == {"a1": 1, "a2": 0, "a3": -1}
    assert after.loc["a2", OUTCOME_AT] == pd.Timestamp("2021-07-20 10:00:00")
    assert pd.notna(after.loc["a1", OUTCOME_AT])  # no outcome_at: when the file was received
    assert after.loc["a1", OUTCOME_SOURCE] == "crm.csv"
    assert set(found.history["via"]) == {"outcomes_file"} and found.history["current"].all()


def test_a_later_outcome_replaces_the_earlier_one_and_the_history_is_kept(lead_home):
    _land(lead_home, "leads.csv", raw_leads(2, DAY, labelled=False).assign(lead_id=["a1", "a2"]))
    _land(lead_home, "first.csv", text=_outcomes_csv([("a1", 0, "2021-07-10")]))
    _land(lead_home, "second.csv", text=_outcomes_csv([("a1", 1, "2021-07-30")]))
    found = _day(lead_home)
    assert found.leads.set_index(LEAD_ID).loc["a1", LABEL] == 1
    history = found.history[found.history[LEAD_ID] == "a1"]
    assert history["source_file"].tolist() == ["first.csv", "second.csv"]
    assert history["current"].tolist() == [False, True] and history[LABEL].tolist() == [0, 1]


@pytest.mark.parametrize("with_ids", [True, False])
def test_a_labelled_re_export_relabels_the_leads_without_a_second_copy(lead_home, with_ids):
    leads = raw_leads(4, DAY, seed=3)
    unlabelled = leads.drop(columns=LABEL)
    if with_ids:
        leads, unlabelled = leads.assign(lead_id=list("abcd")), unlabelled.assign(lead_id=list("abcd"))
    _land(lead_home, "scored_first.csv", unlabelled)
    _land(lead_home, "export.csv", leads)
    found = _day(lead_home)
    assert len(found.leads) == 4 and found.leads[LEAD_ID].is_unique
    assert found.leads[LABEL].tolist() == leads[LABEL].tolist()
    assert set(found.leads["source_file"]) == {"scored_first.csv"}  # the lead is the first copy
    assert found.rejected.empty and found.relabelled == 4
    assert set(found.history["via"]) == {"re_export"}


def test_a_re_export_without_ids_relabels_leads_that_came_with_crm_ids(lead_home):
    leads = raw_leads(3, DAY, seed=5)
    _land(lead_home, "crm.csv", leads.drop(columns=LABEL).assign(lead_id=["c1", "c2", "c3"]))
    _land(lead_home, "export.csv", leads)  # no lead_id column: the ids are derived from the fields
    found = _day(lead_home)
    assert sorted(found.leads[LEAD_ID]) == ["c1", "c2", "c3"]
    assert found.leads.set_index(LEAD_ID)[LABEL].tolist() == leads[LABEL].tolist()


def test_a_labelled_copy_with_other_fields_is_a_conflict_and_does_not_relabel(lead_home):
    leads = raw_leads(2, DAY, seed=7, labelled=False).assign(lead_id=["a1", "a2"])
    _land(lead_home, "leads.csv", leads)
    export = leads.assign(app_complete_flag=[1, 1])
    export.loc[0, "city_mapped"] = "somewhere else"
    _land(lead_home, "export.csv", export)
    found = _day(lead_home)
    labels = found.leads.set_index(LEAD_ID)[LABEL]
    assert pd.isna(labels["a1"]) and labels["a2"] == 1
    (conflict,) = found.rejected.to_dict(orient="records")
    assert (conflict["rule"], conflict["source_file"], conflict["source_row"]) == ("outcome_conflict", "export.csv", 2)
    assert "city_mapped" in conflict["detail"] and "leads.csv row 2" in conflict["detail"]
    assert found.conflicts == 1


def test_an_outcome_for_an_unknown_lead_is_pending_and_attaches_when_the_lead_arrives(lead_home):
    _land(lead_home, "crm.csv", text=_outcomes_csv([("late", 1, "2021-07-06")]))
    assert _day(lead_home).leads is None
    events = landed.outcome_events(lead_home, FIRST, TODAY)
    assert events[LEAD_ID].tolist() == ["late"]  # kept, waiting for its lead
    _land(lead_home, "leads.csv", raw_leads(1, DAY, labelled=False).assign(lead_id=["late"]))
    lead = _day(lead_home).leads.set_index(LEAD_ID).loc["late"]
    assert lead[LABEL] == 1 and lead[OUTCOME_SOURCE] == "crm.csv"


def test_bad_outcome_rows_are_rejected_with_file_row_and_rule(lead_home):
    text = _outcomes_csv([("ok1", 1, ""), ("ok2", 2, ""), ("has space", 1, ""), ("", 0, ""),
                          ("ok3", "", ""), ("ok4", 1, "yesterday"), ("ok5", "yes", "")])
    path = lead_home.root / "o.csv"
    path.write_text(text)
    parsed = parse_outcome_file(path, name="o.csv", sha256="s", today=TODAY)
    assert parsed.accepted[LEAD_ID].tolist() == ["ok1"]
    rules = dict(zip(parsed.rejected["source_row"], parsed.rejected["rule"]))
    assert rules == {3: "label_not_binary", 4: "bad_lead_id", 5: "missing_lead_id", 6: "label_missing",
                     7: "unparseable_date", 8: "label_not_binary"}
    assert len(parsed.accepted) + len(parsed.rejected) == parsed.rows == 7
    assert set(parsed.rejected["source_file"]) == {"o.csv"} and parsed.rejected["day"].isna().all()


def test_stale_days_are_the_days_whose_labels_miss_a_newer_or_withdrawn_outcome():
    raw = pd.DataFrame({LEAD_ID: ["a", "b", "c"],
                        CREATED_DATE: pd.to_datetime(["2021-07-05", "2021-07-06", "2021-07-07"]),
                        OUTCOME_SEQ: pd.array([4, pd.NA, 2], dtype="Int64")})
    narrow = pd.DataFrame({LEAD_ID: ["a", "b", "zz"], OUTCOME_SEQ: [4, 5, 5], "source_row": [2, 2, 3]})
    assert outcomes.stale_days(raw, narrow, {4, 5}) == {"2021-07-06": 1}
    assert outcomes.stale_days(raw, narrow[narrow[OUTCOME_SEQ] == 5], {4, 5}) == {
        "2021-07-05": 1, "2021-07-06": 1}  # the file with seq 4 was withdrawn


def test_maturity_counts_old_silence_as_negative_and_never_a_young_lead():
    frame = pd.DataFrame({CREATED_DATE: pd.to_datetime(["2021-07-01", "2021-07-01", "2021-07-25", "2021-07-25"]),
                          LABEL: pd.array([pd.NA, 1, 0, 1], dtype="Int8")})
    today = date(2021, 7, 31)
    recorded = outcomes.matured_labels(frame, None, today)
    assert recorded.astype("Float64").fillna(-1).tolist() == [-1, 1, 0, 1]
    matured = outcomes.matured_labels(frame, 14, today)  # the young 0 may still become a 1: unknown
    assert matured.astype("Float64").fillna(-1).tolist() == [0, 1, -1, 1]


def test_a_re_export_may_say_when_each_label_became_known(lead_home):
    leads = raw_leads(2, DAY, seed=11)
    _land(lead_home, "leads.csv", leads.drop(columns=LABEL))
    export = leads.assign(outcome_at=["2021-07-20 09:00:00", ""])
    entry = _land(lead_home, "export.csv", export)
    assert entry.unknown_columns == []
    found = _day(lead_home).leads.sort_values("source_row")
    assert found[OUTCOME_AT].iloc[0] == pd.Timestamp("2021-07-20 09:00:00")
    assert found[OUTCOME_AT].iloc[1] == pd.Timestamp(entry.received_at).tz_convert(None)


def test_withdrawing_an_outcomes_file_takes_its_events_back(lead_home):
    _land(lead_home, "leads.csv", raw_leads(1, DAY, labelled=False).assign(lead_id=["a1"]))
    _land(lead_home, "crm.csv", text=_outcomes_csv([("a1", 1, "")]))
    assert _day(lead_home).leads[LABEL].tolist() == [1]
    landed.withdraw(lead_home, "crm.csv", "sent by mistake", FIRST, TODAY)
    assert landed.outcome_events(lead_home, FIRST, TODAY).empty
    assert _day(lead_home).leads[LABEL].isna().all()

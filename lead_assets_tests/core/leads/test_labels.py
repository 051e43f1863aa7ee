"""Outcomes that arrive after the lead: attached to it, never a second lead, conflicts reported."""

from datetime import date

import pandas as pd
import pytest

from lead_assets.core.inbox import ledger

from lead_assets.core.leads import labels, landed
from lead_assets.core.inbox.parsing import parse_outcome_file
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
    entry = ledger.receive(home, path, FIRST, TODAY)
    assert entry.status == "accepted", entry.detail
    return entry


def _day(home, *days):
    return landed.leads_for_days(home, list(days or [DAY]), FIRST, TODAY)


def _outcomes_csv(rows):
    return "lead_id,app_complete_flag,outcome_at\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows)


def test_a_narrow_outcomes_file_is_recognised_by_its_columns_and_has_no_days_of_its_own(lead_home):
    entry = _land(lead_home, "crm.csv", text=_outcomes_csv([("a1", 1, ""), ("a2", 0, "2021-07-20")]))
    assert (entry.kind, entry.days, entry.rows_read) == ("outcomes", {}, 2)
    record = ledger.read_index(lead_home)[0][-1]
    assert record.kind == "outcomes" and record.status == "accepted"
    assert [e.file for e in ledger.landed_entries(lead_home)] == []  # not a lead file
    assert [e.file for e in ledger.landed_entries(lead_home, kind="outcomes")] == ["crm.csv"]


def test_a_file_without_created_date_that_is_not_an_outcomes_file_is_still_refused(lead_home):
    path = lead_home.inbox / "broken.csv"
    path.write_text("lead_id,app_complete_flag,city_mapped\nx,1,pune\n")
    entry = ledger.receive(lead_home, path, FIRST, TODAY)
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
    text = _outcomes_csv([("ok1", 1, ""), ("ok2", 2, ""), ("has\ttab", 1, ""), ("", 0, ""),
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


def _frames(rows):
    """Events as lead_outcomes and raw_leads see them: (lead, label, outcome_at, seq, row, via)."""
    return pd.DataFrame({
        LEAD_ID: [r[0] for r in rows], LABEL: pd.array([r[1] for r in rows], dtype="Int8"),
        OUTCOME_AT: pd.to_datetime([r[2] for r in rows], format="mixed"), "source_file": [f"f{r[3]}.csv" for r in rows],
        "source_sha256": [f"sha{r[3]}" for r in rows], "source_row": [r[4] for r in rows],
        OUTCOME_SEQ: [r[3] for r in rows], "via": [r[5] if len(r) > 5 else "outcomes_file" for r in rows]})


def _leads_frame(rows):
    return pd.DataFrame({LEAD_ID: [r[0] for r in rows], CREATED_DATE: pd.to_datetime([r[1] for r in rows], format="mixed"),
                         "lead_seq": [r[2] for r in rows]})


def test_the_later_outcome_at_wins_and_a_repeat_is_not_a_new_outcome():
    leads = _leads_frame([("a", "2021-07-05", 1), ("b", "2021-07-05", 1)])
    events = _frames([
        ("a", 1, "2021-07-20", 2, 2), ("a", 0, "2021-07-10", 2, 3),  # one file, two labels: 07-20 wins, not row 3
        ("b", 0, "2021-07-11", 2, 4),
        ("a", 1, "2021-07-20", 3, 2), ("b", 0, "2021-07-11", 3, 3),  # tomorrow's export repeats them
        ("b", 1, "2021-07-25", 4, 2),  # a real change
        ("b", 0, "2021-07-15", 5, 2),  # older than the label in force: changes nothing
    ])
    history, refused = labels.resolve(events, leads)
    assert refused.empty
    new = history[history[labels.LABEL_CHANGED]]
    assert sorted(zip(new[LEAD_ID], new[OUTCOME_SEQ], new["source_row"])) == [("a", 2, 2), ("b", 2, 4), ("b", 4, 2)]
    shown = labels.in_force(history)
    assert shown.loc["a", LABEL] == 1 and shown.loc["a", OUTCOME_SEQ] == 2  # the repeat did not move it
    assert shown.loc["b", LABEL] == 1 and shown.loc["b", OUTCOME_AT] == pd.Timestamp("2021-07-25")
    assert labels.new_outcomes_since(history, 2) == 1 and labels.new_outcomes_since(history, 0) == 3


def test_an_outcome_dated_before_its_lead_is_refused():
    leads = _leads_frame([("a", "2021-07-05 12:00", 1)])
    history, refused = labels.resolve(_frames([("a", 1, "2021-07-05 09:00", 2, 2), ("a", 0, "2021-07-06", 3, 2)]),
                                        leads)
    assert history[LABEL].tolist() == [0]
    (row,) = refused.to_dict(orient="records")
    assert (row["rule"], row["day"], row["source_file"], row["source_row"]) == (
        "outcome_before_lead", "2021-07-05", "f2.csv", 2)
    assert "before lead a was created" in row["detail"]


def test_an_outcome_that_waited_for_its_lead_counts_when_the_lead_arrives():
    leads = _leads_frame([("late", "2021-07-05", 7)])
    history, _ = labels.resolve(_frames([("late", 1, "2021-07-06", 3, 2)]), leads)
    assert history[labels.ATTACHED_SEQ].tolist() == [7] and history[labels.LABEL_CHANGED].tolist() == [True]
    assert labels.new_outcomes_since(history, 5) == 1  # landed at 3, but applied at 7: after a training at 5


def test_new_outcomes_since_reads_a_history_from_before_label_changed():
    old = pd.DataFrame({OUTCOME_SEQ: [1, 4, 5, 6]})
    assert labels.new_outcomes_since(old, 4) == 2
    assert labels.new_outcomes_since(old.iloc[:0], 0) == 0
    mixed = pd.DataFrame({OUTCOME_SEQ: [5, 6, 7], labels.LABEL_CHANGED: [True, False, None],
                          labels.ATTACHED_SEQ: [5, 6, None]})
    assert labels.new_outcomes_since(mixed, 4) == 2  # 5 is new, 6 a repeat, 7 from before the column


def test_judge_reports_each_row_and_the_days_to_re_run():
    ingested = pd.DataFrame({LEAD_ID: ["a", "b", "c"], CREATED_DATE: pd.to_datetime(["2021-07-05", "2021-07-06",
                                                                                       "2021-07-07"]),
                             "lead_seq": [1.0, 1.0, 1.0], LABEL: pd.array([1, pd.NA, 0], dtype="Int8"),
                             OUTCOME_AT: pd.to_datetime(["2021-07-10", None, "2021-07-02"]),
                             OUTCOME_SEQ: pd.array([2, pd.NA, 9], dtype="Int64")})
    narrow = _frames([("a", 1, "2021-07-10", 2, 2), ("a", 1, "2021-07-10", 3, 2),  # a: as stored; then a repeat
                      ("b", 0, "2021-07-12", 3, 3),  # b: new
                      ("b", 1, "2021-07-01", 3, 4),  # b: before the lead
                      ("zz", 1, "2021-07-12", 3, 5)])  # no such lead yet
    recorded = pd.DataFrame({"source_sha256": ["sha2", "sha9"], "source_row": [2, 2],
                             "day": ["2021-07-05", "2021-07-07"]})  # sha9 (c's outcome) was withdrawn
    lead_events = _frames([])
    status, days = labels.judge(narrow, ingested, lead_events, recorded, {"sha2", "sha3"})
    assert status.tolist() == ["attached", "unchanged", "attached", "rejected", "pending"]
    assert days == {"2021-07-06": 1, "2021-07-07": 1}  # b gains a label; c's withdrawn outcome leaves


def test_maturity_counts_old_silence_as_negative_and_never_a_young_lead():
    frame = pd.DataFrame({CREATED_DATE: pd.to_datetime(["2021-07-01", "2021-07-01", "2021-07-25", "2021-07-25"]),
                          LABEL: pd.array([pd.NA, 1, 0, 1], dtype="Int8")})
    today = date(2021, 7, 31)
    recorded = labels.matured_labels(frame, None, today)
    assert recorded.astype("Float64").fillna(-1).tolist() == [-1, 1, 0, 1]
    matured = labels.matured_labels(frame, 14, today)  # the young 0 may still become a 1: unknown
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


def test_a_daily_cumulative_export_and_a_crlf_copy_add_no_new_outcomes(lead_home):
    """Issue #20: a CRM exporting every outcome daily, or a file re-saved with other line endings,
    inflated outcomes_since_training and attached."""
    _land(lead_home, "leads.csv", raw_leads(4, DAY, labelled=False).assign(lead_id=["a1", "a2", "a3", "a4"]))
    days = [[("a1", 1, "2021-07-10"), ("a2", 0, "2021-07-10")],
            [("a3", 1, "2021-07-11")],
            [("a4", 0, "2021-07-12"), ("a2", 1, "2021-07-12")]]  # a2 changes: a new outcome
    sent, seqs = [], []
    for i, rows in enumerate(days):
        sent += rows
        seqs.append(_land(lead_home, f"export_{i}.csv", text=_outcomes_csv(sent)).seq)
    found = _day(lead_home)
    history = found.history
    assert len(history) == 2 + 3 + 5 and int(history[labels.LABEL_CHANGED].sum()) == 5
    assert labels.new_outcomes_since(history, seqs[0]) == 3  # a3; a4 and a2's change
    assert found.leads.set_index(LEAD_ID)[LABEL].to_dict() == {"a1": 1, "a2": 1, "a3": 1, "a4": 0}
    assert found.leads.set_index(LEAD_ID).loc["a1", OUTCOME_SOURCE] == "export_0.csv"  # shown: when it became known
    crlf = _outcomes_csv(sent).replace("\n", "\r\n")
    _land(lead_home, "export_2_crlf.csv", text=crlf)
    again = _day(lead_home).history
    assert len(again) == len(history) + 5 and int(again[labels.LABEL_CHANGED].sum()) == 5

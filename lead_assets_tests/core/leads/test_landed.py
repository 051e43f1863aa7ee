"""Landed files to a day's leads: parsed once, one lead in one day, every row accounted for."""

from datetime import date

import pandas as pd
import pytest

from lead_assets.core.inbox import ledger, reader

from lead_assets.core.leads import landed
from lead_assets.core.inbox.parsing import parse_lead_file
from lead_assets_tests.factories import raw_leads

FIRST, TODAY = date(2021, 7, 1), date(2026, 11, 24)


def _land(home, name, frame):
    path = home.inbox / name
    frame.to_csv(path.path, index=False)
    entry = ledger.receive(home, path, FIRST, TODAY)
    assert entry.status == "accepted", entry.detail
    return entry


def _leads(home, *days):
    return landed.leads_for_days(home, list(days), FIRST, TODAY)


def test_a_lead_re_sent_with_another_date_lives_in_the_first_landed_day_only(lead_home):
    first = raw_leads(3, "2021-07-05").assign(lead_id=["x", "y", "z"])
    again = raw_leads(1, "2021-07-09", seed=4, labelled=False).assign(lead_id=["y"])
    _land(lead_home, "first.csv", first)
    _land(lead_home, "again.csv", again)
    assert sorted(_leads(lead_home, "2021-07-05").leads["lead_id"]) == ["x", "y", "z"]
    later = _leads(lead_home, "2021-07-09")
    assert later.leads.empty
    (row,) = later.rejected.to_dict(orient="records")
    assert (row["source_file"], row["source_row"], row["rule"], row["day"]) == (
        "again.csv", 2, "duplicate_of_earlier_file", "2021-07-09")
    assert "first.csv row 3" in row["detail"]
    both = _leads(lead_home, "2021-07-05", "2021-07-09")
    assert sorted(both.leads["lead_id"]) == ["x", "y", "z"] and len(both.rejected) == 1


def test_the_first_landed_copy_wins_even_when_it_has_the_later_date(lead_home):
    _land(lead_home, "late.csv", raw_leads(1, "2021-07-09").assign(lead_id=["y"]))
    _land(lead_home, "early.csv", raw_leads(1, "2021-07-05", seed=3).assign(lead_id=["y"]))
    assert _leads(lead_home, "2021-07-05").leads.empty
    assert _leads(lead_home, "2021-07-09").leads["source_file"].tolist() == ["late.csv"]


def test_the_same_lead_in_two_files_of_one_day_is_accounted_for(lead_home):
    frame = raw_leads(4)
    _land(lead_home, "a.csv", frame)
    _land(lead_home, "b.csv", pd.concat([frame.iloc[:2].drop(columns="app_complete_flag"), raw_leads(1, seed=9)]))
    found = _leads(lead_home, "2021-07-05")
    assert len(found.leads) == 5 and found.duplicates == 2
    assert found.rejected["rule"].tolist() == ["duplicate_of_earlier_file"] * 2
    assert set(found.rejected["source_file"]) == {"b.csv"}


def test_each_landed_file_is_parsed_once(lead_home):
    frame = pd.concat([raw_leads(3, f"2021-07-{d:02d}", seed=d) for d in range(1, 11)], ignore_index=True)
    _land(lead_home, "ten_days.csv", frame)
    calls = []

    def counting(*args, **kwargs):
        calls.append(1)
        return parse_lead_file(*args, **kwargs)
    per_day = [len(landed.leads_for_days(lead_home, [f"2021-07-{d:02d}"], FIRST, TODAY, parse=counting).leads)
               for d in range(1, 11)]
    assert per_day == [3] * 10 and len(calls) == 1


def test_withdrawing_a_file_re_runs_the_days_where_its_leads_were_shared(lead_home):
    first = _land(lead_home, "first.csv", raw_leads(2, "2021-07-05").assign(lead_id=["x", "y"]))
    _land(lead_home, "again.csv", raw_leads(1, "2021-07-09", seed=4).assign(lead_id=["y"]))
    assert _leads(lead_home, "2021-07-09").leads.empty
    withdrawn = landed.withdraw(lead_home, "first.csv", "wrong dates", FIRST, TODAY)
    assert sorted(withdrawn.days) == ["2021-07-05", "2021-07-09"]
    assert _leads(lead_home, "2021-07-05").leads is None
    assert _leads(lead_home, "2021-07-09").leads["lead_id"].tolist() == ["y"]
    assert not (lead_home.landing / first.landed_as).exists()


# ------------------------------------------------------- withdraw never parses (issue #20)
def _land_text(home, name, text):
    path = home.inbox / name
    path.write_text(text)
    entry = ledger.receive(home, path, FIRST, TODAY)
    assert entry.status == "accepted", entry.detail
    return entry


def _with_stray_quote(frame):
    lines = frame.to_csv(index=False).splitlines()
    lines[2] = lines[2].replace(",", ',"', 1)  # row 3 opens a quote in city_mapped that never closes
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("with_ids", [True, False])
def test_a_file_with_a_broken_row_is_ingested_and_withdrawn_without_parsing_it_again(lead_home, monkeypatch,
                                                                                      with_ids):
    bad = raw_leads(4, "2021-07-05", labelled=False)
    good = raw_leads(3, "2021-07-09", seed=2, labelled=False)
    if with_ids:
        bad, good = bad.assign(lead_id=["b1", "b2", "b3", "shared"]), good.assign(lead_id=["g1", "g2", "shared"])
    bad_entry = _land_text(lead_home, "bad.csv", _with_stray_quote(bad))
    _land(lead_home, "good.csv", good)
    both = _leads(lead_home, "2021-07-05", "2021-07-09")  # one range run: the stray quote used to fail it
    assert both.rejected[both.rejected["source_file"] == "bad.csv"]["rule"].tolist() == ["unclosed_quote"]
    assert len(both.leads) == 3 + 3 - int(with_ids)  # bad rows 2, 4, 5 and good's (its 'shared' lost to bad's)

    def forbidden(*args, **kwargs):
        raise AssertionError("withdraw parsed a file")
    monkeypatch.setattr(landed, "parse_lead_chunks", forbidden)
    monkeypatch.setattr(landed, "parse_outcome_chunks", forbidden)
    monkeypatch.setattr(reader, "text_chunks", forbidden)
    withdrawn = landed.withdraw(lead_home, "bad.csv", "broken export", FIRST, TODAY)
    assert sorted(withdrawn.days) == (["2021-07-05", "2021-07-09"] if with_ids else ["2021-07-05"])
    assert not (lead_home.landing / bad_entry.landed_as).exists()
    monkeypatch.undo()
    after = _leads(lead_home, "2021-07-05", "2021-07-09")
    assert set(after.leads["source_file"]) == {"good.csv"} and len(after.leads) == 3


def test_a_file_withdrawn_before_any_run_parsed_it_re_runs_its_landed_days(lead_home, monkeypatch):
    entry = _land_text(lead_home, "never_parsed.csv",
                       _with_stray_quote(raw_leads(3, "2021-07-06", labelled=False).assign(lead_id=["x", "y", "z"])))
    monkeypatch.setattr(landed, "parse_lead_chunks", lambda *a, **k: pytest.fail("withdraw parsed a file"))
    assert sorted(landed.withdraw(lead_home, entry.sha256[:8], "no", FIRST, TODAY).days) == ["2021-07-06"]


def test_a_range_run_reads_the_outcomes_files_once_for_all_its_chunks(lead_home, monkeypatch):
    _land(lead_home, "leads.csv", pd.concat([raw_leads(2, f"2021-07-0{d}", seed=d, labelled=False).assign(
        lead_id=[f"l{d}a", f"l{d}b"]) for d in (5, 6, 7)], ignore_index=True))
    _land_text(lead_home, "crm.csv", "lead_id,app_complete_flag\nl5a,1\nl7b,0\n")
    index = landed.OutcomeIndex(lead_home, FIRST, TODAY)
    monkeypatch.setattr(landed, "parsed_outcome_files", lambda *a, **k: pytest.fail("outcomes read again"))
    labels = {}
    for day in ("2021-07-05", "2021-07-06", "2021-07-07"):  # three chunks of one run
        found = landed.leads_for_days(lead_home, [day], FIRST, TODAY, index=index)
        labels.update(found.leads.set_index("lead_id")["app_complete_flag"].dropna().to_dict())
    assert labels == {"l5a": 1, "l7b": 0}
    assert index.events_for(["l7b", "nobody", "l5a"])["lead_id"].tolist() == ["l5a", "l7b"]

"""The CRM's rows: best first per day, the capacity line, reasons in words, a day replaced in place."""

import pandas as pd
import pytest
import sqlalchemy as sa

from lead_assets.core.scoring import crm
from lead_assets.core.schema import CREATED_DATE, LEAD_ID


def scored(day: str, probabilities, version="1", buckets=None, ids=None) -> pd.DataFrame:
    n = len(probabilities)
    return pd.DataFrame({
        LEAD_ID: ids or [f"{day}-{i}" for i in range(n)],
        CREATED_DATE: pd.to_datetime([f"{day} 10:{i:02d}:00" for i in range(n)]),
        "probability": probabilities, "score": [round(100 * p) for p in probabilities],
        "bucket": buckets or ["hot" if p >= 0.8 else "warm" if p >= 0.6 else "cold" if p >= 0.3 else "junk"
                              for p in probabilities],
        "reason_1_feature": ["total_leads_droppped"] * n, "reason_1_value": ["3"] * n, "reason_1_shap": [0.8] * n,
        "reason_2_feature": ["source_level"] * n, "reason_2_value": ["others"] * n, "reason_2_shap": [-0.3] * n,
        "reason_3_feature": ["not_a_known_feature"] * n, "reason_3_value": ["x"] * n, "reason_3_shap": [0.1] * n,
        "model_version": version, "scored_at": pd.Timestamp("2021-08-02 06:00", tz="UTC"),
    })


def test_rows_are_ranked_best_first_per_day_with_the_capacity_line_and_words_a_rep_reads():
    frame = pd.concat([scored("2021-08-01", [0.2, 0.9, 0.7, 0.5]), scored("2021-08-02", [0.85, 0.1])])
    rows = crm.export_rows(frame, capacity=2)
    assert list(rows.columns) == list(crm.EXPORT_COLUMNS)
    first = rows[rows[crm.DAY] == "2021-08-01"]
    assert first["score"].tolist() == [90, 70, 50, 20] and first["day_rank"].tolist() == [1, 2, 3, 4]
    assert first["in_capacity"].tolist() == [True, True, False, False]
    second = rows[rows[crm.DAY] == "2021-08-02"]
    assert second["in_capacity"].tolist() == [True, False]  # the junk lead is never inside, however short the day
    assert rows[crm.TOP_REASONS].iloc[0] == ("raises the chance: filled in a lead form 3 time(s); "
                                             "not_a_known_feature x | lowers it: first came from source others")
    assert crm.export_rows(frame, capacity=None)["in_capacity"].sum() == 4  # no capacity: every non-junk lead
    text = crm.to_csv_bytes(rows).decode()
    assert text.splitlines()[0] == ",".join(crm.EXPORT_COLUMNS) and "2021-08-01T10:01:00" in text


def test_a_day_written_again_replaces_its_rows_and_says_what_changed(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'crm.db'}")
    first = crm.export_rows(scored("2021-08-01", [0.9, 0.7, 0.5, 0.2]), capacity=2)
    assert crm.replace_days(engine, ["2021-08-01"], first).empty
    before = crm.replace_days(engine, ["2021-08-01"], first)  # the same rows again: nothing changed
    same = crm.changes(before, first)
    assert same["changed"] == 0 and same["added"] == 0 and same["bucket_changed_share"] == 0
    ids = first.sort_values(crm.LEAD_ID)[crm.LEAD_ID].tolist()
    rescored = crm.export_rows(scored("2021-08-01", [0.65, 0.85, 0.5, 0.35], version="2", ids=ids), capacity=2)
    before = crm.replace_days(engine, ["2021-08-01"], rescored)
    moved = crm.changes(before, rescored)
    assert moved["bucket_changed"] == 3 and moved["version_changed"] == 4 and moved["changed"] == 3
    table = moved["transitions"].set_index(["old_bucket", "new_bucket"])["leads"].to_dict()
    assert table == {("cold", "cold"): 1, ("hot", "warm"): 1, ("junk", "cold"): 1, ("warm", "hot"): 1}
    assert moved["in_capacity_changed_share"] == 0.0  # the same two leads are inside, in another order
    stored = pd.read_sql("SELECT * FROM lead_scores ORDER BY day_rank", engine)
    assert len(stored) == 4 and stored["model_version"].tolist() == ["2"] * 4
    assert stored["score"].tolist() == [85, 65, 50, 35]


def test_a_lead_whose_day_was_corrected_moves_instead_of_being_published_twice(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'crm.db'}")
    crm.replace_days(engine, ["2021-08-01"], crm.export_rows(scored("2021-08-01", [0.9], ids=["L1"]), None))
    crm.replace_days(engine, ["2021-08-03"], crm.export_rows(scored("2021-08-03", [0.4], ids=["L1"]), None))
    stored = pd.read_sql("SELECT lead_id, lead_day FROM lead_scores", engine)
    assert stored.to_dict(orient="records") == [{"lead_id": "L1", "lead_day": "2021-08-03"}]


def test_every_feature_of_the_model_has_a_phrase():
    from lead_assets.core import schema

    assert set(schema.feature_columns()) <= set(crm.reason_phrases())
    assert all("{value}" in phrase for phrase in crm.reason_phrases().values())


def test_a_capacity_must_be_a_whole_number_of_leads():
    with pytest.raises(ValueError, match="daily capacity must be a whole number"):
        crm.export_rows(scored("2021-08-01", [0.9]), capacity=0)

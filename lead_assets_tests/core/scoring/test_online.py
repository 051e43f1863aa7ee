"""Online scoring in the core: typed as ingest types a file, scored as the batch scores it."""

import json
import os
from datetime import date

import numpy as np
import pandas as pd
import pytest
from upath import UPath

from lead_assets.core import schema

from lead_assets.core.scoring import online
from lead_assets.core.leads.cleaning import clean_leads
from lead_assets.core.leads.features import build_features
from lead_assets.core.inbox.parsing import parse_lead_file
from lead_assets.core.model.recipe import TrainConfig
from lead_assets.core.scoring.batch import score_leads
from lead_assets.core.leads.synth import generate_leads
from lead_assets.core.model.training import train_model
from lead_assets_tests.factories import FAST, make_features

TYPED = [schema.LEAD_ID, schema.CREATED_DATE, schema.CITY, *schema.LEVEL_COLUMNS, *schema.numeric_columns()]


@pytest.fixture(scope="module")
def model():
    return train_model(make_features(n=1200, seed=8), TrainConfig(**FAST)).model


def _raw(n_days=2, per_day=30, seed=5) -> pd.DataFrame:
    """Synthetic raw leads with the untidy fields a form sends: padded, upper-case, blank, given ids."""
    assert n_days * per_day >= 5
    raw = generate_leads("2021-08-01", n_days, per_day, seed=seed, labelled=False).reset_index(drop=True)
    raw.loc[0, schema.CITY] = "  Mumbai "
    raw.loc[1, schema.CITY] = ""
    raw.loc[2, schema.PLATFORM] = " Level3"
    raw.loc[3, schema.SOURCE] = None
    raw.loc[4, schema.LEADS_DROPPED] = None
    raw.insert(0, schema.LEAD_ID, [f"crm-{i}" if i % 3 else None for i in range(len(raw))])
    return raw


def _records(raw: pd.DataFrame) -> pd.DataFrame:
    """What MLflow hands the model: the JSON records back as a frame."""
    return pd.DataFrame(json.loads(raw.to_json(orient="records")))


def _parse_file(raw: pd.DataFrame, tmp_path):
    path = tmp_path / "leads.csv"
    raw.to_csv(path, index=False)
    return parse_lead_file(UPath(path), name="leads.csv", sha256="0", first_day=date(2021, 7, 1),
                           today=pd.Timestamp.now(tz="UTC").date())


def _same(a: pd.Series, b: pd.Series) -> bool:
    left, right = a.astype(object).where(a.notna(), None).tolist(), b.astype(object).where(b.notna(), None).tolist()
    return left == right


def test_typed_like_the_file_ingest_with_the_same_lead_ids(tmp_path):
    raw = _raw()
    parsed = _parse_file(raw, tmp_path)
    assert parsed.rejected.empty
    typed = online.type_leads(_records(raw))
    assert len(typed) == len(parsed.accepted) == len(raw)
    for column in TYPED:
        assert _same(typed[column], parsed.accepted[column]), column
    assert typed[schema.LEAD_ID].iloc[1] == "crm-1" and typed[schema.LEAD_ID].iloc[0] != "None"
    assert typed[schema.CITY].iloc[0] == "mumbai" and pd.isna(typed[schema.CITY].iloc[1])


@pytest.mark.parametrize(("column", "value", "rule"), [
    (schema.CREATED_DATE, "2021-02-30", "unparseable_date"),
    (schema.CREATED_DATE, "yesterday", "unparseable_date"),
    (schema.CREATED_DATE, "2099-01-01 10:00:00", "date_in_future"),
    (schema.LEADS_DROPPED, -1.0, "negative_count"),
    (schema.LEADS_DROPPED, 5000.0, "absurd_count"),
    (schema.LEADS_DROPPED, "three", "not_a_number"),
    (schema.REFERRED, 0.5, "not_binary"),
    ("syllabus", -2.0, "negative_count"),
])
def test_a_broken_record_breaks_the_rule_the_file_ingest_names(tmp_path, column, value, rule):
    raw = _raw(1, 5).astype({column: object})
    raw.loc[2, column] = value
    parsed = _parse_file(raw, tmp_path)
    assert parsed.rejected[["rule", "column"]].values.tolist() == [[rule, column]]
    with pytest.raises(online.InvalidLeads) as error:
        online.type_leads(_records(raw))
    assert [(p["record"], p["field"], p["rule"]) for p in error.value.problems] == [(2, column, rule)]
    assert f"record 2: {column}: {rule}: " in str(error.value)


def test_missing_fields_empty_requests_and_duplicates_are_refused():
    raw = _raw(1, 5)
    with pytest.raises(online.InvalidLeads, match="created_date: missing_field.*city_mapped: missing_field"):
        online.type_leads(_records(raw).drop(columns=[schema.CREATED_DATE, schema.CITY]))
    with pytest.raises(online.InvalidLeads, match="record 1: created_date: unparseable_date: created_date is empty"):
        online.type_leads(_records(raw.assign(created_date=["2021-08-01", " ", *raw[schema.CREATED_DATE][2:]])))
    with pytest.raises(online.InvalidLeads) as empty:
        online.type_leads(_records(raw).iloc[:0])
    assert [p["rule"] for p in empty.value.problems] == ["no_leads"]
    with pytest.raises(online.InvalidLeads) as no_columns:
        online.type_leads(pd.DataFrame())
    assert [p["rule"] for p in no_columns.value.problems] == ["no_leads"]
    twice = pd.concat([raw.iloc[[0]], raw.iloc[[0]]]).assign(lead_id=None)
    with pytest.raises(online.InvalidLeads, match="record 1: lead_id: duplicate_in_request: same lead as record 0"):
        online.type_leads(_records(twice))


def test_online_answers_equal_the_batch_rows(model, tmp_path):
    raw = _raw(2, 40)
    features = build_features(clean_leads(_parse_file(raw, tmp_path).accepted))
    batch = score_leads(features, model, model_name="lead_scoring", model_version="4").set_index(schema.LEAD_ID)
    ids = features[schema.LEAD_ID].to_numpy()  # the file's rows, in order: every one was accepted
    answers = []
    for (cut, rule), rows in batch.groupby(["cutoff", "cutoff_rule"]):  # one request per cut-off the batch used
        answers += online.score_records(_records(raw[np.isin(ids, rows.index)]), model, "lead_scoring", "4",
                                        online.Cutoff(cut, rule))
    answers = pd.DataFrame(answers).set_index(schema.LEAD_ID).loc[batch.index]
    np.testing.assert_allclose(answers["probability"], batch["probability"], rtol=0, atol=1e-9)
    for column in ("score", "bucket", "cutoff", "reasons", "unseen_levels", "unseen_columns", "model_version"):
        assert answers[column].tolist() == batch[column].tolist(), column
    first = answers["reason_details"].iloc[0][0]
    assert first["feature"] == batch["reason_1_feature"].iloc[0] and first["value"] == batch["reason_1_value"].iloc[0]
    assert first["size"] == pytest.approx(abs(batch["reason_1_shap"].iloc[0]))
    assert first["direction"] == ("up" if batch["reason_1_shap"].iloc[0] >= 0 else "down")
    assert answers["created_date"].iloc[0] == batch["created_date"].iloc[0].strftime("%Y-%m-%dT%H:%M:%S")
    assert set(answers.columns) | {schema.LEAD_ID} == set(online.OUTPUT_FIELDS)


def test_the_cutoff_comes_from_the_request_then_the_published_file_then_the_model(model, tmp_path):
    fallback = online.choose_cutoff(model, "4")
    assert fallback.value == model.cutoff_rule.threshold and "fallback" in fallback.rule
    published = {"model_version": "4", "cutoff": 0.37, "cutoff_rule": "top 40.0% of 900 leads", "day": "2021-08-02"}
    assert online.choose_cutoff(model, "4", published=published) == online.Cutoff(
        0.37, "as scored on 2021-08-02: top 40.0% of 900 leads")
    assert online.choose_cutoff(model, "5", published=published) == fallback  # another version's cut-off
    assert online.choose_cutoff(model, "4", 0.5, published).value == 0.5
    for bad in (1.5, -0.1, "x", True):
        with pytest.raises(online.InvalidLeads, match="params.cutoff: out_of_range"):
            online.choose_cutoff(model, "4", bad)

    file = online.CutoffFile(tmp_path / "cutoff.json")
    assert file.read() is None
    (tmp_path / "cutoff.json").write_text(json.dumps(published))
    assert file.read() == published
    (tmp_path / "cutoff.json").write_text(json.dumps(dict(published, cutoff=0.4, day="2021-08-03")))
    os.utime(tmp_path / "cutoff.json", ns=(1, 10**18))
    assert file.read()["cutoff"] == 0.4


def test_published_cutoff_is_the_latest_lead_this_version_scored(model, tmp_path):
    raw = _raw(3, 10)
    features = build_features(clean_leads(_parse_file(raw, tmp_path).accepted))
    scored = score_leads(features, model, model_name="lead_scoring", model_version="4")
    scored.loc[scored.index[-1], "cutoff"] = 0.123
    found = online.published_cutoff(scored, "4")
    assert found["cutoff"] == 0.123 and found["day"] == "2021-08-03" and found["model_version"] == "4"
    assert online.published_cutoff(scored, "5") is None


def test_buckets_from_params_are_checked():
    assert online.bucket_config({"hot_min_probability": 0.9, "warm_min_probability": 0.5}).hot == 0.9
    with pytest.raises(online.InvalidLeads, match="out_of_range"):
        online.bucket_config({"hot_min_probability": 0.3, "warm_min_probability": 0.5})


# ------------------------------------------------ online input rules are the batch's (issue #20)
@pytest.mark.parametrize(("column", "value", "text", "rule"), [
    (schema.REFERRED, True, "true", "not_a_number"),  # was scored as 1 (MLflow cast the column first)
    (schema.REFERRED, False, "false", "not_a_number"),
    (schema.REFERRED, 1, "1", None),
    (schema.REFERRED, 1.0, "1.0", None),
    (schema.LEADS_DROPPED, "3", "3", None),
    (schema.LEADS_DROPPED, " 2 ", " 2 ", None),
    (schema.LEADS_DROPPED, None, "", None),  # an empty count is missing, in a file as in a request
    (schema.CITY, None, "", None),
    (schema.CITY, 12, "12", None),
    (schema.CREATED_DATE, "1900-01-01", "1900-01-01", "date_before_start"),  # was scored online
    (schema.CREATED_DATE, None, "", "unparseable_date"),
    (schema.CREATED_DATE, 20210801, "20210801", None),
])
def test_a_json_value_is_judged_as_the_batch_judges_its_text(tmp_path, column, value, text, rule):
    raw = _raw(1, 5).astype({column: object})
    record = json.loads(raw.to_json(orient="records"))
    record[2][column] = value
    raw.loc[2, column] = text
    parsed = _parse_file(raw, tmp_path)
    batch = parsed.rejected[["source_row", "rule", "column"]].values.tolist()
    try:
        online.type_leads(pd.DataFrame(record))
        answer = []
    except online.InvalidLeads as error:
        answer = [[p["record"] + 2, p["rule"], p["field"]] for p in error.problems]
    assert answer == batch == ([] if rule is None else [[4, rule, column]])


def test_what_a_file_cannot_hold_is_refused_naming_record_field_and_rule():
    raw = _raw(1, 5)
    records = json.loads(raw.to_json(orient="records"))
    records[1][schema.CITY] = {"name": "pune"}
    records[2][schema.PLATFORM] = ["Level0"]
    records[3][schema.SOURCE] = "Level\ud8002"  # a lone surrogate: not text (was a 400 'unexpected error')
    records[4][schema.LEADS_DROPPED] = float("nan")  # NaN is an empty count, as null is
    with pytest.raises(online.InvalidLeads) as error:
        online.type_leads(pd.DataFrame(records))
    problems = [(p["record"], p["field"], p["rule"]) for p in error.value.problems]
    assert problems == [(1, schema.CITY, "wrong_type"), (2, schema.PLATFORM, "wrong_type"),
                        (3, schema.SOURCE, "undecodable_bytes")]
    assert "{'name'" not in str(error.value) and "must be a text or a number, not dict" in str(error.value)


def test_the_registered_model_gets_the_json_values_uncast(model, tmp_path):
    """Through MLflow's own scoring app: its schema once cast `true` to 1.0 before the rules saw it,
    and refused an empty dataframe_records as seven missing fields."""
    import mlflow.pyfunc
    from mlflow.models import ModelSignature
    from mlflow.pyfunc import scoring_server
    from starlette.testclient import TestClient

    from lead_assets.core.release import registry

    mlflow.pyfunc.save_model(str(tmp_path / "m"), python_model=registry._pyfunc_class()(model),
                             signature=ModelSignature(registry.raw_input_schema(), None, registry.params_schema()))
    client = TestClient(scoring_server.init(mlflow.pyfunc.load_model(str(tmp_path / "m"))))
    record = json.loads(_raw(1, 5).iloc[[0]].to_json(orient="records"))[0]

    def post(records):
        answer = client.post("/invocations", json={"dataframe_records": records})
        return answer.status_code, answer.json()

    status, body = post([record])
    assert status == 200 and len(body["predictions"]) == 1
    status, body = post([dict(record, referred_lead=True)])
    assert status == 400 and "record 0: referred_lead: not_a_number" in body["message"]
    status, body = post([dict(record, created_date="1900-01-01")])
    assert status == 400 and "created_date: date_before_start" in body["message"]
    status, body = post([])
    assert status == 400 and "no_leads" in body["message"] and "missing_field" not in body["message"]


def test_the_published_recalibration_is_what_the_online_answer_scores_with(model, tmp_path):
    from lead_assets.core.model import recalibration
    from lead_assets.core.release import registry

    raw = _raw(1, 20)
    features = build_features(clean_leads(_parse_file(raw, tmp_path).accepted))
    refit = recalibration.Recalibration("4", "2021-09-01T00:00:00", 0.8, -0.3, 500, 200, "2021-07-01",
                                        "2021-07-30", 0.08, 0.01)
    batch = score_leads(features, recalibration.recalibrated(model, refit), model_name="lead_scoring",
                        model_version="4").set_index(schema.LEAD_ID)
    pyfunc = registry._pyfunc_class()(model)
    pyfunc.model_version, pyfunc.cutoff_file = "4", online.CutoffFile(tmp_path / "cutoff.json")
    published = online.published_cutoff(batch.reset_index(), "4")
    (tmp_path / "cutoff.json").write_text(json.dumps({**published, "recalibration": refit.as_dict()}))
    answers = pd.DataFrame(pyfunc.answer(_records(raw))).set_index(schema.LEAD_ID).loc[batch.index]
    np.testing.assert_allclose(answers["probability"], batch["probability"], rtol=0, atol=1e-9)
    assert answers["score"].tolist() == batch["score"].tolist()
    (tmp_path / "cutoff.json").write_text(json.dumps({**published, "model_version": "5",
                                                      "recalibration": refit.as_dict()}))
    os.utime(tmp_path / "cutoff.json", ns=(1, 10**18))
    mine = pd.DataFrame(pyfunc.answer(_records(raw))).set_index(schema.LEAD_ID).loc[batch.index]
    as_trained = score_leads(features, model, model_name="lead_scoring", model_version="4").set_index(schema.LEAD_ID)
    np.testing.assert_allclose(mine["probability"], as_trained["probability"], rtol=0, atol=1e-9)  # not ours

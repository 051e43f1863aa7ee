"""Range runs stream: a range larger than the chunk cap is read, scored, checked and written a
chunk of days at a time, and gives exactly what the all-at-once run gives."""

import pickle

import pandas as pd
import pytest
from dagster import AssetKey, AssetSpec, materialize

from lead_assets.core.store import warehouse
from lead_assets.core.model.recipe import TrainConfig
from lead_assets.core.schema import CREATED_DATE, LEAD_ID
from lead_assets.core.model.training import train_model
from lead_assets.defs.scoring.drift_checks import scored_leads_drift
from lead_assets.defs.scoring.scoring_checks import scored_leads_quality
from lead_assets.defs.leads.cleaning import cleaned_leads
from lead_assets.defs.leads.features import lead_features
from lead_assets.defs.partitions import lead_days
from lead_assets.defs.resources import LeadHomeResource, ModelRegistry, WarehouseIOManager
from lead_assets.defs.scoring.scoring import scored_leads
from lead_assets_tests.factories import FAST, make_features
from lead_assets_tests.factories import raw_leads as make_raw

pytestmark = pytest.mark.slow(seconds=15)  # started first by make test (conftest.py)

CAP = 250  # rows a step may hold; each day below has 60-100 leads, the range 30 days
FIRST, LAST = "2021-08-01", "2021-08-30"
RUN_DAYS = [d.strftime("%Y-%m-%d") for d in pd.date_range(FIRST, LAST)]


class PickledChampion(ModelRegistry):
    """The champion from a pickle: scoring without training and promoting through MLflow."""

    model_path: str

    def load_champion(self):
        with open(self.model_path, "rb") as handle:
            return pickle.load(handle), "7"


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.pkl"
    path.write_bytes(pickle.dumps(train_model(make_features(n=2400, seed=5), TrainConfig(**FAST)).model))
    return str(path)


def resources(model_file, chunk_rows=None):
    home = LeadHomeResource()
    return {"lead_home": home, "io_manager": WarehouseIOManager(lead_home=home, chunk_rows=chunk_rows),
            "model_registry": PickledChampion(lead_home=home, model_path=model_file)}


def range_tags(first, last):
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


def write_features(home):
    """45 days of features straight into the warehouse: 15 days before the run (the cut-off
    window of its first days) and the 30 days of the run, 60-100 leads a day."""
    frames = [make_features(n=60 + (i * 7) % 41, start=day.strftime("%Y-%m-%d"), days=1, seed=100 + i)
              for i, day in enumerate(pd.date_range("2021-07-17", LAST))]
    for frame in frames:
        day = frame[CREATED_DATE].iloc[0].strftime("%Y-%m-%d")
        frame = frame[frame[CREATED_DATE].dt.strftime("%Y-%m-%d") == day]
        warehouse.write_partition(home.warehouse, "lead_features", day, frame)
    return sum(len(f) for f in frames)


def score_range(instance, model_file, chunk_rows):
    written = AssetSpec("lead_features", partitions_def=lead_days)  # written straight to the warehouse
    result = materialize([written, scored_leads, scored_leads_quality, scored_leads_drift],
                         selection=[AssetKey("scored_leads")], resources=resources(model_file, chunk_rows),
                         instance=instance, tags=range_tags(FIRST, LAST))
    assert result.success
    return result


def scored_frame(home):
    scored = warehouse.read_partitions(home.warehouse, "scored_leads", RUN_DAYS)
    return scored.drop(columns=["scored_at"]).sort_values(LEAD_ID).reset_index(drop=True)


def test_a_range_scored_in_small_chunks_equals_the_range_scored_at_once(lead_home, instance, model_file):
    write_features(lead_home)
    in_run = len(warehouse.read_partitions(lead_home.warehouse, "lead_features", RUN_DAYS))
    assert in_run > 8 * CAP  # the range is far larger than what a step may hold

    chunked = score_range(instance, model_file, chunk_rows=CAP)
    meta = chunked.asset_materializations_for_node("scored_leads")[0].metadata
    assert meta["leads"].value == in_run and meta["rows"].value == in_run
    assert meta["chunks_read"].value >= in_run // CAP  # the 30 run days and the 13 days before, in chunks
    assert 0 < meta["max_rows_loaded"].value <= CAP
    assert meta["partitions_written"].value == len(RUN_DAYS)
    for check in ("scored_leads_quality", "scored_leads_drift"):  # checks judge every day, chunk by chunk
        evaluations = [e for e in chunked.get_asset_check_evaluations() if e.check_name == check]
        assert sorted(e.partition for e in evaluations) == RUN_DAYS
    assert all(e.passed for e in chunked.get_asset_check_evaluations() if e.check_name == "scored_leads_quality")
    small = scored_frame(lead_home)

    at_once = score_range(instance, model_file, chunk_rows=10**9)
    meta = at_once.asset_materializations_for_node("scored_leads")[0].metadata
    assert meta["max_rows_loaded"].value == in_run  # one chunk: the whole range

    whole = scored_frame(lead_home)
    assert len(small) == in_run
    pd.testing.assert_frame_equal(small, whole)
    # the trailing window really crossed chunks: the cut-offs of late days count 14 days of leads
    assert small["cutoff_rule"].str.contains(r"of \d+ leads created 2021-08-1[0-9]\.\.2021-08-2", regex=True).any()


def test_cleaning_and_features_stream_with_the_cap_from_the_environment(lead_home, instance, monkeypatch):
    monkeypatch.setenv("LEAD_ASSETS_CHUNK_ROWS", "25")
    days = [f"2021-07-{d:02d}" for d in range(1, 11)]
    for i, day in enumerate(days):
        raw = make_raw(10 + i, day, seed=i).assign(**{LEAD_ID: [f"{day}-{j}" for j in range(10 + i)]})
        warehouse.write_partition(lead_home.warehouse, "raw_leads", day,
                                  raw.assign(**{CREATED_DATE: pd.to_datetime(raw[CREATED_DATE])}))
    home = LeadHomeResource()
    written = AssetSpec("raw_leads", partitions_def=lead_days)
    result = materialize([written, cleaned_leads, lead_features], resources={"lead_home": home,
                                                                   "io_manager": WarehouseIOManager(lead_home=home)},
                         instance=instance, tags=range_tags(days[0], days[-1]),
                         selection=[AssetKey("cleaned_leads"), AssetKey("lead_features")])
    assert result.success
    total = sum(10 + i for i in range(len(days)))
    for asset in ("cleaned_leads", "lead_features"):
        meta = result.asset_materializations_for_node(asset)[0].metadata
        assert meta["leads"].value == total and meta["chunk_rows"].value == 25
        assert meta["max_rows_loaded"].value <= 25 and meta["chunks_read"].value >= total // 25
    features = warehouse.read_partitions(lead_home.warehouse, "lead_features")
    assert sorted(features[LEAD_ID]) == sorted(f"{d}-{j}" for i, d in enumerate(days) for j in range(10 + i))


def test_raw_leads_streams_a_range_and_gives_what_the_range_at_once_gives(lead_home, instance):
    """Copies across chunks (a CRM id re-sent on a later day, a labelled re-export, an outcomes file)
    are judged as across runs: the chunked range equals the range at once, file by file and row by row."""
    from datetime import date

    from lead_assets.core.inbox import ledger
    from lead_assets.defs.inbox.ingest import raw_leads

    first, today = date(2021, 7, 1), date(2026, 11, 24)
    days = [d.strftime("%Y-%m-%d") for d in pd.date_range("2021-08-01", "2021-08-10")]
    frames = [make_raw(40, day, seed=i, labelled=False).assign(lead_id=[f"{day}-{k}" for k in range(40)])
              for i, day in enumerate(days)]
    resent = make_raw(1, days[-1], seed=99, labelled=False).assign(lead_id=[f"{days[0]}-3"])  # first chunk's lead
    export = frames[4].assign(app_complete_flag=[k % 2 for k in range(40)]).drop(columns="lead_id")
    outcomes = "lead_id,app_complete_flag\n" + "".join(f"{days[8]}-{k},1\n" for k in range(5))
    for name, frame in [("history.csv", pd.concat(frames)), ("resent.csv", resent), ("export.csv", export)]:
        frame.to_csv((lead_home.inbox / name).path, index=False)
    (lead_home.inbox / "outcomes.csv").write_text(outcomes)
    for name in ("history.csv", "resent.csv", "export.csv", "outcomes.csv"):  # in this order
        assert ledger.receive(lead_home, lead_home.inbox / name, first, today).status == "accepted"

    def run(chunk_rows):
        home = LeadHomeResource(chunk_rows=chunk_rows)
        result = materialize([raw_leads], resources={"lead_home": home, "io_manager": WarehouseIOManager(
            lead_home=home)}, instance=instance, tags=range_tags(days[0], days[-1]))
        assert result.success
        metadata = result.asset_materializations_for_node("raw_leads")[0].metadata
        raw = warehouse.read_partitions(lead_home.warehouse, "raw_leads", days).sort_values(LEAD_ID)
        rejected = warehouse.read_partitions(lead_home.warehouse, "rejected_leads", days)
        return raw.reset_index(drop=True), rejected.sort_values(["source_file", "source_row"]), metadata

    chunked, chunked_rejected, metadata = run(chunk_rows=90)
    assert metadata["chunks"].value == 6 and metadata["leads"].value == 400  # 40-80 rows a day, 90 a chunk
    whole, whole_rejected, whole_metadata = run(chunk_rows=10_000)
    assert whole_metadata["chunks"].value == 1
    pd.testing.assert_frame_equal(chunked, whole)
    pd.testing.assert_frame_equal(chunked_rejected.reset_index(drop=True), whole_rejected.reset_index(drop=True),
                                  check_dtype=False)  # a day with no rejected rows is an empty (object) file
    assert chunked_rejected["rule"].tolist() == ["duplicate_of_earlier_file"]  # the re-sent CRM id
    assert chunked.set_index(LEAD_ID).loc[[f"{days[8]}-{k}" for k in range(5)], "app_complete_flag"].tolist() == [1] * 5
    assert int(chunked["app_complete_flag"].notna().sum()) == 45  # the re-export's 40 and the 5 outcomes

"""Small hand-made lead frames for tests that need exact control over every value."""

import numpy as np
import pandas as pd

from lead_assets.core import schema
from lead_assets.core.schema import CREATED_DATE, LABEL, LEAD_ID


def raw_leads(n: int = 5, day: str = "2021-07-05", seed: int = 0, labelled: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    base = pd.Timestamp(day)
    frame = pd.DataFrame({
        schema.CREATED_DATE: [(base + pd.Timedelta(seconds=int(s))).strftime("%Y-%m-%d %H:%M:%S")
                              for s in rng.integers(0, 86_399, n)],
        schema.CITY: rng.choice(["mumbai", "indore", "ghazipur", ""], n),
        schema.PLATFORM: rng.choice(["Level0", "Level3", "Level47"], n),
        schema.MEDIUM: rng.choice(["Level0", "Level2", "Level300"], n),
        schema.SOURCE: rng.choice(["Level2", "Level0", "Level99"], n),
        schema.LEADS_DROPPED: rng.integers(1, 5, n).astype(float),
        schema.REFERRED: rng.integers(0, 2, n).astype(float),
    })
    for column in schema.reference().interaction_columns:
        frame[column] = np.nan
    frame["syllabus"] = np.where(rng.random(n) < 0.3, 1.0, np.nan)
    if labelled:
        frame[schema.LABEL] = rng.integers(0, 2, n)
    return frame[[c for c in schema.raw_columns() if c in frame.columns]]


FAST = dict(iterations=60, min_iterations=20, early_stopping_rounds=20, thread_count=2)


def make_features(n: int = 2400, start: str = "2021-07-01", days: int = 120, seed: int = 0,
                  signal: float = 1.0, shuffle_labels: bool = False) -> pd.DataFrame:
    """A feature table (as ``build_features`` makes it) with a planted signal: good platforms,
    bad sources, more courses looked at and referrals move the odds of completing."""
    rng = np.random.default_rng(seed)
    seconds = np.sort(rng.uniform(0, days * 86400, n))
    created = pd.Timestamp(start) + pd.to_timedelta(seconds.round(), unit="s")
    cities = np.array(["mumbai", "ncr", "pune", "indore", "agra", "missing", *[f"town{i}" for i in range(30)]])
    city = rng.choice(cities, n)
    tiers = {"mumbai": 1, "ncr": 1, "pune": 1, "indore": 2, "agra": 2}
    city_effect = dict(zip(cities, np.random.default_rng(99).normal(0, 0.6, len(cities))))
    platform = rng.choice(["Level0", "Level3", "Level1", "Level2", "Level47"], n)
    medium = rng.choice(["Level0", "Level2", "Level6", "Level300"], n)
    source = rng.choice(["Level0", "Level2", "Level7", "Level99"], n)
    dropped = rng.integers(1, 11, n).astype(float)
    referred = (rng.random(n) < 0.08).astype(float)
    logit = (-0.6 + signal * (2.0 * np.isin(platform, ["Level0", "Level3"]) - 1.8 * (source == "Level99")
                              + 0.4 * (dropped - 4) + 1.0 * referred + pd.Series(city).map(city_effect).to_numpy())
             + rng.normal(0, 0.3, n))
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    if shuffle_labels:
        label = rng.permutation(label)
    frame = pd.DataFrame({
        LEAD_ID: [f"lead-{seed}-{i}" for i in range(n)],
        CREATED_DATE: created,
        "city": city, "platform_level": platform, "medium_level": medium, "source_level": source,
        "city_tier": pd.Series(city).map(tiers).fillna(3).astype(float),
        schema.LEADS_DROPPED: dropped, schema.REFERRED: referred,
    })
    for group in schema.reference().group_columns:
        frame[group] = 0.0
    frame[LABEL] = pd.array(label, dtype="Int8")
    return frame[[LEAD_ID, CREATED_DATE, *schema.feature_columns(), LABEL]]

"""Small hand-made raw lead frames for tests that need exact control over every value."""

import numpy as np
import pandas as pd

from lead_assets.core import schema


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

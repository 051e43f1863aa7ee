"""The model's input table: exactly the feature columns, in order, with stable dtypes.

Keys (``lead_id``, ``created_date``), the label and when it became known (``outcome_at``) ride
along beside the features so that training, scoring and performance can join results back to
leads; ``feature_frame`` strips them.
"""

from __future__ import annotations

import pandas as pd

from lead_assets.core import schema
from lead_assets.core.schema import CREATED_DATE, LABEL, LEAD_ID, OUTCOME_AT

KEY_COLUMNS: tuple[str, ...] = (LEAD_ID, CREATED_DATE)


def feature_dtypes() -> dict[str, str]:
    dtypes = {c: "object" for c in schema.CATEGORICAL_FEATURES}
    dtypes.update({c: "float64" for c in schema.numeric_features()})
    return dtypes


def build_features(cleaned: pd.DataFrame) -> pd.DataFrame:
    """Cleaned leads to the feature table: keys, the model's columns, and the label (nullable)."""
    columns = list(schema.feature_columns())
    out = cleaned[list(KEY_COLUMNS)].copy()
    for column, dtype in feature_dtypes().items():
        values = cleaned[column]
        out[column] = values.astype(str) if dtype == "object" else values.astype(dtype)
    label = cleaned[LABEL] if LABEL in cleaned.columns else pd.Series(pd.NA, index=cleaned.index)
    out[LABEL] = pd.array(label, dtype="Int8")
    known = cleaned[OUTCOME_AT] if OUTCOME_AT in cleaned.columns else pd.Series(pd.NaT, index=cleaned.index)
    out[OUTCOME_AT] = pd.to_datetime(known).astype("datetime64[ns]")
    return out[[*KEY_COLUMNS, *columns, LABEL, OUTCOME_AT]].reset_index(drop=True)


def feature_frame(features: pd.DataFrame) -> pd.DataFrame:
    """Just the model's input columns, in the model's order."""
    return features[list(schema.feature_columns())]

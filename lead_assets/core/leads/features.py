"""The model's input table: exactly the feature columns, in order, with stable dtypes.

Keys (``lead_id``, ``created_date``), the label and when it became known (``outcome_at``) ride
along beside the features so that training, scoring and performance can join results back to
leads; ``feature_frame`` strips them.
"""

from __future__ import annotations

from functools import lru_cache

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
    out: dict[str, object] = {c: cleaned[c].array for c in KEY_COLUMNS}
    for column, dtype in _dtypes().items():
        values = cleaned[column]
        if dtype == "object":
            out[column] = values.to_numpy(dtype=object) if _all_text(values) else values.astype(str).to_numpy()
        else:
            out[column] = values.to_numpy(dtype=dtype)
    label = cleaned[LABEL] if LABEL in cleaned.columns else pd.Series(pd.NA, index=cleaned.index)
    out[LABEL] = pd.array(label, dtype="Int8")
    known = cleaned[OUTCOME_AT] if OUTCOME_AT in cleaned.columns else pd.Series(pd.NaT, index=cleaned.index)
    out[OUTCOME_AT] = pd.to_datetime(known).astype("datetime64[ns]").to_numpy()
    return pd.DataFrame(out, index=pd.RangeIndex(len(cleaned)))


@lru_cache(maxsize=1)
def _dtypes() -> dict[str, str]:
    """``feature_dtypes`` in the table's column order, computed once."""
    dtypes = feature_dtypes()
    return {c: dtypes[c] for c in schema.feature_columns()}


def _all_text(values: pd.Series) -> bool:
    """Every value already a str (what cleaning gives): ``astype(str)`` would copy them unchanged."""
    return values.dtype == object and all(type(v) is str for v in values.to_numpy())


def feature_frame(features: pd.DataFrame) -> pd.DataFrame:
    """Just the model's input columns, in the model's order."""
    return features[list(schema.feature_columns())]

"""The CodePro lead schema: column names, types and the reference tables that cleaning uses.

Everything that names a column lives here, so the rest of the code never spells a column
name twice. Reference tables are data files in ``lead_assets/reference`` (not code literals)
so that the business can change a city tier or a significant level without a code change.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

CREATED_DATE = "created_date"
CITY = "city_mapped"
PLATFORM = "first_platform_c"
MEDIUM = "first_utm_medium_c"
SOURCE = "first_utm_source_c"
LEADS_DROPPED = "total_leads_droppped"  # sic: three p's, as in the source system
REFERRED = "referred_lead"
LABEL = "app_complete_flag"
LEAD_ID = "lead_id"
CITY_TIER = "city_tier"
SOURCE_FILE = "source_file"
SOURCE_ROW = "source_row"
# When a lead's label became known, and which landed file (ledger sequence number) supplied it.
OUTCOME_AT = "outcome_at"
OUTCOME_SOURCE = "outcome_source"
OUTCOME_SEQ = "outcome_seq"

# The first lead day when LEAD_ASSETS_START_DATE does not say (the partitions start there).
DEFAULT_FIRST_DAY = "2021-07-01"

LEVEL_COLUMNS: tuple[str, ...] = (PLATFORM, MEDIUM, SOURCE)
OTHERS = "others"
MISSING = "missing"

# Cleaned leads keep the original (un-mapped) levels and city beside the case-study columns.
CITY_NAME = "city"
ORIGINAL_LEVEL_COLUMNS: dict[str, str] = {
    PLATFORM: "platform_level",
    MEDIUM: "medium_level",
    SOURCE: "source_level",
}


@dataclass(frozen=True)
class Reference:
    """The cleaning rules' lookup tables, loaded from the package's data files."""

    city_tiers: dict[str, int]
    significant_levels: dict[str, frozenset[str]]
    interaction_groups: dict[str, str]

    @property
    def interaction_columns(self) -> tuple[str, ...]:
        return tuple(self.interaction_groups)

    @property
    def group_columns(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.interaction_groups.values())))


def _read_reference_csv(name: str) -> list[dict[str, str]]:
    text = resources.files("lead_assets.reference").joinpath(name).read_text(encoding="utf-8-sig")
    return list(csv.DictReader(text.splitlines()))


@lru_cache(maxsize=1)
def reference() -> Reference:
    tiers = {row["city"].strip().lower(): int(row["tier"]) for row in _read_reference_csv("city_tiers.csv")}
    levels: dict[str, set[str]] = {c: set() for c in LEVEL_COLUMNS}
    for row in _read_reference_csv("significant_levels.csv"):
        if row["column"] not in levels:
            raise ValueError(f"significant_levels.csv: unknown column {row['column']!r}")
        levels[row["column"]].add(row["level"].strip())
    groups = {
        row["interaction_column"]: row["interaction_group"]
        for row in _read_reference_csv("interaction_groups.csv")
    }
    return Reference(
        city_tiers=tiers,
        significant_levels={c: frozenset(v) for c, v in levels.items()},
        interaction_groups=groups,
    )


def raw_columns() -> tuple[str, ...]:
    """The 45 named columns of a raw lead file, in the source system's order (label last)."""
    return (
        CREATED_DATE, CITY, PLATFORM, MEDIUM, SOURCE, LEADS_DROPPED, REFERRED,
        *reference().interaction_columns, LABEL,
    )


def required_columns() -> tuple[str, ...]:
    """Columns a file must carry to be ingested; interactions and the label are optional."""
    return (CREATED_DATE, CITY, PLATFORM, MEDIUM, SOURCE, LEADS_DROPPED, REFERRED)


def outcome_columns() -> tuple[str, ...]:
    """A narrow outcomes file: the lead and its label, optionally when the label became known."""
    return (LEAD_ID, LABEL, OUTCOME_AT)


def is_outcome_header(columns) -> bool:
    """An outcomes file names a lead and its label and none of the lead's own fields: a lead file that
    lost its ``created_date`` is a broken lead file, not outcomes."""
    present = set(columns)
    return {LEAD_ID, LABEL} <= present and not present & set(required_columns())


def numeric_columns() -> tuple[str, ...]:
    return (LEADS_DROPPED, REFERRED, *reference().interaction_columns)


# The model's input, in order. Categorical columns are strings; CatBoost treats them natively.
CATEGORICAL_FEATURES: tuple[str, ...] = (CITY_NAME, *ORIGINAL_LEVEL_COLUMNS.values())


def numeric_features() -> tuple[str, ...]:
    return (CITY_TIER, LEADS_DROPPED, REFERRED, *reference().group_columns)


def feature_columns() -> tuple[str, ...]:
    return (*CATEGORICAL_FEATURES, *numeric_features())

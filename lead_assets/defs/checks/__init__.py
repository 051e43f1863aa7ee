"""Data-quality asset checks (Great Expectations 1.x inside @asset_check), one per lead asset.

Each check is partitioned like its asset and records one evaluation per day of the run (see
``common``). raw, cleaned and features checks are blocking: a failed day stops the rest of the
run before scoring. The scored_leads check only warns. Great Expectations is imported when a
check runs, never when the code location loads.
"""

from lead_assets.defs.checks.cleaned import cleaned_leads_quality
from lead_assets.defs.checks.drift import scored_leads_drift
from lead_assets.defs.checks.features import lead_features_schema
from lead_assets.defs.checks.raw import raw_leads_quality
from lead_assets.defs.checks.scored import scored_leads_quality

all_checks: list = [raw_leads_quality, cleaned_leads_quality, lead_features_schema, scored_leads_quality,
                    scored_leads_drift]

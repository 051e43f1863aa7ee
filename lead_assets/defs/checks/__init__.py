"""Data-quality asset checks (Great Expectations 1.x inside @asset_check), one per lead asset.

Each check is partitioned like its asset and records one evaluation per day of the run (see
``common``). raw, cleaned and features checks are blocking: a failed day stops the rest of the
run before scoring. The scored_leads checks only warn. Great Expectations is imported when a
check runs, never when the code location loads.

Dagster's defs-folder loader collects every check from the module that defines it; this package
holds no check at module scope (``all_checks`` is a tuple of them, which the loader does not
collect), so none is loaded twice.
"""

from lead_assets.defs.checks import cleaned, drift, features, raw, scored

all_checks: tuple = (raw.raw_leads_quality, cleaned.cleaned_leads_quality, features.lead_features_schema,
                     scored.scored_leads_quality, drift.scored_leads_drift)

"""Lead data is partitioned by the UTC day of ``created_date``."""

import os

from dagster import BackfillPolicy, DailyPartitionsDefinition

FIRST_DAY = os.environ.get("LEAD_ASSETS_START_DATE", "2021-07-01")

# end_offset=1: today's partition exists while leads for today are still arriving.
lead_days = DailyPartitionsDefinition(start_date=FIRST_DAY, timezone="UTC", end_offset=1)

# A date range is one run: a historical file, a UI backfill and --partition-range all benefit.
one_run_per_range = BackfillPolicy.single_run()

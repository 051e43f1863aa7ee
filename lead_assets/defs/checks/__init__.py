"""Data-quality asset checks (Great Expectations 1.x inside @asset_check)."""

all_checks: list = []

"""How often the sensors are evaluated: each sensor's own default, or one interval for all.

``LEAD_ASSETS_SENSOR_INTERVAL_SECONDS`` (read when the code location loads) replaces every
sensor's ``minimum_interval_seconds``: a replay through ``dagster dev`` steps through weeks of
history in minutes and should not wait a minute for the retrain sensor at every step. The
daemon evaluates a sensor at most every ~5 s whatever this says.
"""

import os

INTERVAL_ENV = "LEAD_ASSETS_SENSOR_INTERVAL_SECONDS"


def every(default: int) -> int:
    """``default`` seconds, or the environment's one interval for every sensor."""
    text = (os.environ.get(INTERVAL_ENV) or "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{INTERVAL_ENV}={text!r}: a whole number of seconds, at least 1")
    return value

"""Outcomes stage: model_performance and its check, champion_calibration, and the sensors that refresh them and retrain from them."""

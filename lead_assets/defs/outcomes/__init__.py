"""Outcomes stage: model_performance, its check, and the sensors that refresh it and retrain from it."""

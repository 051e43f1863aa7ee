"""Scoring stage: scored_leads with its quality and drift checks, crm_export, and the sensors and jobs that keep
scores fresh (promotion, rescoring, the retrain schedule)."""

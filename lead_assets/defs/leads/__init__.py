"""Leads stage: cleaned_leads, lead_features and their blocking checks, lead_outcomes, lead_insights."""

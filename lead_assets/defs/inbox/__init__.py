"""Inbox stage: raw_leads, its quality check, and the inbox sensor that lands files and starts runs."""

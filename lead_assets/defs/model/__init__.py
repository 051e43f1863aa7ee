"""Model stage: lead_scoring_model, its blocking promotion gate, and champion_model."""

"""`exposure bench`: speed against a peer implementation (transformers, the study's scoring
packages, a full-recompute decoder), reported as ratios measured in the same run."""

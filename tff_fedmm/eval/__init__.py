"""Evaluation: ranking/CTR metrics, codebook statistics and cross-market code alignment (numpy only)."""

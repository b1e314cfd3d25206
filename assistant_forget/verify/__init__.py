"""Verification: metrics, scoring, the exact oracle and shadow models, the verdict and the report."""

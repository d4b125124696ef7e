"""Evaluation: brand-compliance metrics as pure functions."""

"""Headless domain logic of quantpress. Never imports Qt (enforced by ruff and tests/test_boundaries.py)."""

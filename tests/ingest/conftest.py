"""Fixtures of the ingestion tests live in tests/conftest.py (shared with later stages)."""

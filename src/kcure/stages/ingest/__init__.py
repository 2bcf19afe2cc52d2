"""Ingestion: landing zone -> verified, typed, quarantined staging (SOURCES.md §2-3)."""

"""Ingestion: landing zone -> verified, typed, quarantined staging (docs/contract.md §2-3)."""

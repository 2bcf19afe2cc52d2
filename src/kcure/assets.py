"""The Airflow Assets the DAGs share (imported by DAG files only; the CLI never needs Airflow)."""

from __future__ import annotations

from airflow.sdk import Asset, AssetAlias

from kcure.core.deliveries import FEEDS

#: one Asset per feed, emitted (through the alias) by each mapped ingest task that staged something
STAGED_FEEDS = AssetAlias("kcure_staged_feeds")
FEED_ASSETS = {feed: Asset(name=f"kcure_staged_{feed}", uri=f"kcure://staging/{feed}") for feed in FEEDS}
#: emitted once per ingest run, after every feed-year settled, when at least one was newly staged:
#: the build DAG is scheduled on it, so it never starts from a half-ingested landing zone
STAGING_UPDATED = Asset(name="kcure_staging_updated", uri="kcure://staging")
#: emitted by the build DAG's publish task
LIBRARY_RELEASE = Asset(name="kcure_library_release", uri="kcure://library/releases")

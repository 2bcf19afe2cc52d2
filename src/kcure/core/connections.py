"""Airflow connections, where Airflow is installed: the one lookup every caller shares.

Only "no such connection" means "not configured here": any other failure (a secrets backend that
denies access, a backend that cannot be loaded) is raised as it is, so a broken secrets backend
is never mistaken for a missing secret.
"""

from __future__ import annotations

from typing import Any


def airflow_connection(conn_id: str) -> Any:
    """The Airflow connection ``conn_id``, or None where Airflow is absent or has no such connection."""
    try:
        from airflow.sdk import BaseHook
        from airflow.sdk.exceptions import AirflowNotFoundException
    except ImportError:  # no Airflow in this environment (spark-submit on a cluster node, say)
        return None
    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None

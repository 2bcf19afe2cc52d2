"""An Airflow secrets backend that denies every lookup: a broken or locked-down vault, for tests."""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowSecretsBackendAccessDenied
from airflow.secrets import BaseSecretsBackend


class DenyAll(BaseSecretsBackend):
    def get_conn_value(self, conn_id: str) -> Any:
        raise AirflowSecretsBackendAccessDenied(f"policy denies {conn_id}")

    def get_connection(self, conn_id: str) -> Any:
        raise AirflowSecretsBackendAccessDenied(f"policy denies {conn_id}")

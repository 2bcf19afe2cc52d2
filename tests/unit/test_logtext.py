"""The event-log reader the leak scans use: it drops Spark's measurements and nothing else."""

from __future__ import annotations

import json
from pathlib import Path

import zstandard

from tests.logtext import event_log_words, read_text, tokens

YKIHO = "42372681"  # an 8-digit provider code


def _log(tmp_path: Path, *events: dict) -> Path:
    path = tmp_path / "events_1_local-1.zstd"
    text = "\n".join(json.dumps(e) for e in events) + "\n"
    path.write_bytes(zstandard.ZstdCompressor().compress(text.encode()))
    return path


def test_a_metric_that_happens_to_equal_an_identifier_is_not_scanned(tmp_path: Path) -> None:
    log = _log(
        tmp_path,
        {
            "Event": "SparkListenerTaskEnd",
            "Task Metrics": {"Executor CPU Time": int(YKIHO), "Peak Execution Memory": int(YKIHO)},
            "Task Info": {
                "Accumulables": [
                    {
                        "ID": 7,
                        "Name": "number of output rows",
                        "Update": YKIHO,
                        "Value": YKIHO,
                        "Internal": True,
                        "Metadata": "sql",
                    }
                ]
            },
        },
        {"Event": "SparkListenerDriverAccumUpdates", "executionId": 3, "accumUpdates": [[7, int(YKIHO)]]},
    )
    assert YKIHO in read_text(log)  # the raw text would have been a false alarm
    words = event_log_words(log)
    assert YKIHO not in tokens(words)
    assert {"SparkListenerTaskEnd", "Executor", "CPU", "Accumulables", "number", "rows"} <= tokens(words)


def test_an_identifier_in_a_plan_a_property_or_an_error_is_still_found(tmp_path: Path) -> None:
    places = [
        {"Event": "SparkListenerSQLExecutionStart", "physicalPlanDescription": f"Filter (YKIHO = {YKIHO})"},
        {"Event": "SparkListenerEnvironmentUpdate", "Spark Properties": {"spark.kcure.probe": YKIHO}},
        {
            "Event": "SparkListenerTaskEnd",
            "Task End Reason": {"Reason": "ExceptionFailure", "Description": f"bad {YKIHO}"},
        },
        # a string that is not a bare count, even in a SQL metric's field, is still read
        {
            "Event": "SparkListenerTaskEnd",
            "Task Info": {"Accumulables": [{"Value": f"id {YKIHO}", "Internal": True, "Metadata": "sql"}]},
        },
        # a user-named accumulator (not Spark's internal SQL metric), and a property called Value
        {"Event": "SparkListenerTaskEnd", "Task Info": {"Accumulables": [{"Name": "codes", "Value": YKIHO}]}},
        {"Event": "SparkListenerJobStart", "Properties": {"Value": YKIHO}},
        # and so is a key
        {"Event": "SparkListenerJobStart", "Properties": {YKIHO: "1"}},
    ]
    for event in places:
        assert YKIHO in tokens(event_log_words(_log(tmp_path, event))), event

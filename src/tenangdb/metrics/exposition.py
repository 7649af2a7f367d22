"""The metric families, built from the state file at each scrape, in Prometheus text format.

Names follow the original TenangDB; unlike it, counters are counters (`*_total` only on
counters), durations are histograms, and gauges hold what they say (the size of the latest
successful backup, the time of the latest success). A family with no data yet is still
described (HELP/TYPE) so dashboards and alert rules can be written before the first run.
"""

from __future__ import annotations

import time

from typing import Any, Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from tenangdb.metrics.state import BUCKETS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _duration_histogram(name: str, doc: str, records: dict[str, Any]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=["database", "status"])
    for database, record in sorted(records.items()):
        for status, hist in sorted(record.get("duration", {}).items()):
            cumulative, buckets = 0, []
            for bound, count in zip(BUCKETS, hist["buckets"]):
                cumulative += count
                buckets.append((_bound(bound), cumulative))
            buckets.append(("+Inf", hist["count"]))
            family.add_metric([database, status], buckets, hist["sum"])
    return family


def _bound(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


def _per_database(cls, name: str, doc: str, records: dict[str, Any], field: str,
                  extra: tuple[str, str] | None = None) -> Metric:
    labels = ["database"] + ([extra[0]] if extra else [])
    family = cls(name, doc, labels=labels)
    for database, record in sorted(records.items()):
        if field in record:
            family.add_metric([database] + ([extra[1]] if extra else []), record[field])
    return family


def _two_labels(cls, name: str, doc: str, records: dict[str, Any], second: str) -> Metric:
    family = cls(name, doc, labels=["database", second])
    for database, inner in sorted(records.items()):
        for key, value in sorted(inner.items()):
            family.add_metric([database, key], value)
    return family


def families(state: dict[str, Any], *, running: bool, state_readable: bool = True,
             duration_form: str = "histogram") -> Iterable[Metric]:
    backup, upload, restore = state["backup"], state["upload"], state["restore"]
    verify = state["verify"]
    G, C = GaugeMetricFamily, CounterMetricFamily

    def _histogram(name: str, doc: str, records: dict[str, Any]) -> Metric:
        if duration_form == "gauge":
            # The original's exporter served the latest duration as a gauge; its dashboards read it so.
            return _per_database(G, name, f"{doc} Latest run (metrics.duration_form: gauge).", records,
                                 "last_duration_seconds")
        return _duration_histogram(name, doc, records)

    yield _histogram("tenangdb_backup_duration_seconds", "Duration of database backups.", backup)
    yield _per_database(C, "tenangdb_backup_success_total", "Successful database backups.", backup, "success_total")
    yield _per_database(C, "tenangdb_backup_failed_total", "Failed database backups.", backup, "failed_total")
    yield _per_database(G, "tenangdb_backup_size_bytes", "Stored size of the latest successful backup.",
                        backup, "size_bytes")
    yield _per_database(G, "tenangdb_backup_last_timestamp", "Unix time the latest backup attempt ended.",
                        backup, "last_timestamp")
    yield _per_database(G, "tenangdb_backup_last_success_timestamp",
                        "Unix time the latest successful backup ended.", backup, "last_success_timestamp")
    yield _per_database(G, "tenangdb_backup_fidelity_losses",
                        "Things the newest committed backup does not hold exactly (recorded losses; "
                        "docs/fidelity.md).", backup, "fidelity_losses")
    yield G("tenangdb_backup_process_running", "1 while a tenangdb backup run is in progress.",
            value=1 if running else 0)
    total = G("tenangdb_total_databases", "Databases in the latest backup run.")
    if "total_databases" in state["run"]:
        total.add_metric([], state["run"]["total_databases"])
    yield total

    yield _histogram("tenangdb_upload_duration_seconds", "Duration of uploads.", upload)
    yield _per_database(C, "tenangdb_upload_success_total", "Successful uploads.", upload, "success_total")
    yield _per_database(C, "tenangdb_upload_failed_total", "Failed uploads.", upload, "failed_total")
    yield _per_database(C, "tenangdb_upload_bytes_total", "Bytes uploaded (cumulative).", upload, "bytes_total",
                        extra=("provider", "rclone"))
    yield _per_database(G, "tenangdb_upload_last_timestamp", "Unix time the latest upload ended.",
                        upload, "last_timestamp")
    yield _per_database(G, "tenangdb_upload_last_success_timestamp", "Unix time the latest successful upload ended.",
                        upload, "last_success_timestamp")

    yield _histogram("tenangdb_restore_duration_seconds", "Duration of restores.", restore)
    yield _per_database(C, "tenangdb_restore_success_total", "Successful restores.", restore, "success_total")
    yield _per_database(C, "tenangdb_restore_failed_total", "Failed restores.", restore, "failed_total")
    yield _per_database(G, "tenangdb_restore_last_timestamp", "Unix time the latest restore ended.",
                        restore, "last_timestamp")
    yield _per_database(G, "tenangdb_restore_test_duration_seconds",
                        "Duration of the latest test restore (the measured recovery time).",
                        state["restore_test"], "duration_seconds")
    yield _per_database(C, "tenangdb_restore_test_success_total", "Test restores that passed every check.",
                        state["restore_test"], "success_total")
    yield _per_database(C, "tenangdb_restore_test_failed_total", "Test restores that failed a check.",
                        state["restore_test"], "failed_total")
    yield _per_database(G, "tenangdb_restore_test_content_proven",
                        "1 when the latest passing test restore proved every table's rows and checksum, 0 "
                        "when it could only show the load and the objects.", state["restore_test"], "content_proven")
    yield _per_database(G, "tenangdb_restore_test_last_success_timestamp",
                        "Unix time the latest passing test restore ended.", state["restore_test"],
                        "last_success_timestamp")

    drill = state["drill"]
    yield _per_database(G, "tenangdb_drill_duration_seconds", "Duration of the latest passing recovery drill: "
                        "download, verification, load and checks of the newest off-site backup.", drill,
                        "duration_seconds")
    yield _per_database(G, "tenangdb_drill_last_success_timestamp", "Unix time the latest passing recovery drill "
                        "ended.", drill, "last_success_timestamp")
    yield _per_database(G, "tenangdb_drill_last_timestamp", "Unix time the latest recovery drill ended.", drill,
                        "last_timestamp")
    yield _per_database(C, "tenangdb_drill_success_total", "Recovery drills that passed.", drill, "success_total")
    yield _per_database(C, "tenangdb_drill_failed_total", "Recovery drills that failed.", drill, "failed_total")

    yield _per_database(C, "tenangdb_verify_success_total", "Backups that passed verification.", verify,
                        "success_total")
    yield _per_database(C, "tenangdb_verify_failed_total", "Backups that failed verification.", verify,
                        "failed_total")
    yield _per_database(G, "tenangdb_verify_last_timestamp", "Unix time the latest verification ended.",
                        verify, "last_timestamp")
    yield _per_database(G, "tenangdb_verify_last_success_timestamp",
                        "Unix time the latest successful verification ended.", verify, "last_success_timestamp")

    yield from _binlog(state)

    yield _two_labels(G, "tenangdb_backups_retained", "Backups kept, by location.", state["retained"], "location")
    yield _two_labels(C, "tenangdb_cleanup_deleted_total", "Backups deleted by retention, by location.",
                      state["cleanup"], "location")
    notify = C("tenangdb_notify_failed_total", "Notifications that could not be delivered.", labels=["kind"])
    for kind, record in sorted(state["notify"].items()):
        notify.add_metric([kind], record.get("failed_total", 0))
    yield notify
    yield G("tenangdb_metrics_state_readable", "0 when the metrics state file could not be read.",
            value=1 if state_readable else 0)
    yield from _deprecated(state, running=running, state_readable=state_readable)


def _binlog(state: dict[str, Any]) -> Iterable[Metric]:
    """The archiver's families (per server: one archive is one server's binary log) and the
    point-in-time window (per database: each database's restores start from its own base)."""
    G, C = GaugeMetricFamily, CounterMetricFamily
    archive = state["binlog"]
    for cls, name, key, doc in (
            (G, "tenangdb_binlog_last_archived_timestamp", "last_archived_timestamp",
             "Unix time of the newest event in the binlog archive."),
            (G, "tenangdb_binlog_lag_seconds", "lag_seconds", "How old the newest transaction not yet archived "
             "can be, now: the time since the archive was last known complete (the exposure; binlog.max_lag is "
             "the target). It keeps growing while the archiver is stopped."),
            (C, "tenangdb_binlog_gaps", "gaps_total", "Gaps found in the binlog archive: files the server purged "
             "before they were archived (point-in-time restore across one is impossible)."),
            (G, "tenangdb_binlog_last_success_timestamp", "last_success_timestamp",
             "Unix time the latest successful archiver cycle ended."),
            (C, "tenangdb_binlog_cycle_failed", "failed_total", "Archiver cycles that failed.")):
        family = cls(name, doc, labels=["server"])
        for server, record in sorted(archive.items()):
            if key == "lag_seconds" and "archived_until_timestamp" in record:
                # Measured when scraped: between cycles (or after the archiver died) the
                # exposure grows, and a value written at the last cycle would hide that.
                family.add_metric([server], max(time.time() - record["archived_until_timestamp"], 0.0))
            elif key in record:
                family.add_metric([server], record[key])
        yield family
    yield _per_database(G, "tenangdb_pitr_window_start_timestamp", "The oldest point in time the database can "
                        "be restored to: its oldest base backup with a binlog position whose archived chain to "
                        "now has no gap.", state["pitr"], "window_start_timestamp")


DEPRECATED = "Deprecated (the original TenangDB's name): "


def _deprecated(state: dict[str, Any], *, running: bool, state_readable: bool) -> Iterable[Metric]:
    """The original's series that dashboards still query, each with a truthful value; their
    HELP names the replacement (docs/switching.md)."""
    G, C = GaugeMetricFamily, CounterMetricFamily
    yield G("tenangdb_backup_process_active", DEPRECATED + "use tenangdb_backup_process_running.",
            value=1 if running else 0)
    yield G("tenangdb_system_health", DEPRECATED + "1 when the exporter can read the metrics state; use "
            "tenangdb_metrics_state_readable and the age of tenangdb_backup_last_success_timestamp.",
            value=1 if state_readable else 0)
    last = G("tenangdb_last_process_timestamp", DEPRECATED + "Unix time the latest backup run ended; use "
             "tenangdb_backup_last_timestamp.")
    if "last_finished_timestamp" in state["run"]:
        last.add_metric([], state["run"]["last_finished_timestamp"])
    yield last
    run = state["cleanup_run"]
    for cls, name, key, doc in (
            (G, "tenangdb_cleanup_duration_seconds", "duration_seconds", "duration of the latest cleanup"),
            (C, "tenangdb_cleanup_success_total", "success_total", "cleanups that deleted everything they planned"),
            (C, "tenangdb_cleanup_failed_total", "failed_total", "cleanups with a failed deletion or an "
             "unlistable remote"),
            (C, "tenangdb_cleanup_files_removed_total", "files_removed_total", "items (backups, unfinished "
             "folders) deleted"),
            (C, "tenangdb_cleanup_bytes_freed_total", "bytes_freed_total", "bytes freed"),
            (G, "tenangdb_cleanup_last_timestamp", "last_timestamp", "Unix time the latest cleanup ended")):
        family = cls(name, f"{DEPRECATED}{doc}; use tenangdb_cleanup_deleted_total and tenangdb_backups_retained.")
        if key in run:
            family.add_metric([], run[key])
        yield family


class _StateCollector:
    def __init__(self, state: dict[str, Any], running: bool, state_readable: bool, duration_form: str) -> None:
        self.args = state, running, state_readable, duration_form

    def collect(self) -> Iterable[Metric]:
        state, running, readable, form = self.args
        return families(state, running=running, state_readable=readable, duration_form=form)


def render(state: dict[str, Any], *, running: bool, state_readable: bool = True,
           duration_form: str = "histogram") -> bytes:
    # A private registry: no process/platform collectors, only what the state says.
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StateCollector(state, running, state_readable, duration_form))
    return generate_latest(registry)

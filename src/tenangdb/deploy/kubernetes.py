"""Kubernetes manifests and the container image recipe.

`python -m tenangdb.deploy DIR` writes them (deploy/kubernetes/tenangdb.yaml and
deploy/Dockerfile in the repository are that output; a test keeps them in step).

The pods run as a non-root user on a read-only root filesystem with every capability dropped.
Nothing secret is in these files: the database password and the metrics password come from
the Secret `tenangdb-secrets`, the age identity from the Secret `tenangdb-age-identity`, and the
rclone config from the Secret `tenangdb-rclone`; create them with kubectl (see the README).
"""

from __future__ import annotations

import yaml

UID = 10001
IMAGE = "tenangdb:0.1.0"
NAMESPACE = "tenangdb"
DATA = "/data"

CONFIG = f"""\
# No secret here: ${{NAME}} values come from the Secret tenangdb-secrets (as environment).
database:
  host: mariadb.databases.svc.cluster.local
  port: 3306
  username: tenangdb_backup
  password: ${{TENANGDB_DB_PASSWORD}}
  # Encrypted; to verify the server too, mount its CA and use VERIFY_IDENTITY with ssl_ca.
  ssl_mode: REQUIRED
backup:
  directory: {DATA}/backups
  databases: all
  tracking_directory: {DATA}/state
  encryption:
    enabled: true
    key_file: /etc/tenangdb/age/age-identity.txt
upload:
  enabled: false
  destination: remote:tenangdb
  rclone_config_path: /etc/tenangdb/rclone/rclone.conf
# Point-in-time recovery: the Deployment tenangdb-binlog archives the server's binary log
# (the server needs log_bin=ON, binlog_format=ROW; the account REPLICATION SLAVE, BINLOG MONITOR
# and RELOAD: see `tenangdb doctor`). Scale it to 0 where the binary log is off.
binlog:
  enabled: true
  max_lag: 5m
metrics:
  enabled: true
  listen: 0.0.0.0
  port: 9090
  storage_path: {DATA}/state/metrics.json
  basic_auth:
    username: prometheus
    password: ${{TENANGDB_METRICS_BASIC_AUTH_PASSWORD}}
"""


def _security_context() -> dict:
    return {
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }


def _pod_security() -> dict:
    return {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
            "seccompProfile": {"type": "RuntimeDefault"}}


def _env() -> list[dict]:
    return [
        {"name": "TENANGDB_CONFIG", "value": "/etc/tenangdb/config/config.yaml"},
        {"name": "TENANGDB_DB_PASSWORD",
         "valueFrom": {"secretKeyRef": {"name": "tenangdb-secrets", "key": "db-password"}}},
        {"name": "TENANGDB_METRICS_BASIC_AUTH_PASSWORD",
         "valueFrom": {"secretKeyRef": {"name": "tenangdb-secrets", "key": "metrics-password"}}},
    ]


def _volumes(*, identity: bool, rclone: bool) -> tuple[list[dict], list[dict]]:
    volumes = [
        {"name": "config", "configMap": {"name": "tenangdb-config"}},
        {"name": "data", "persistentVolumeClaim": {"claimName": "tenangdb-data"}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
    ]
    mounts = [
        {"name": "config", "mountPath": "/etc/tenangdb/config", "readOnly": True},
        {"name": "data", "mountPath": DATA},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    if identity:
        volumes.append({"name": "age-identity", "secret": {"secretName": "tenangdb-age-identity",
                                                           "defaultMode": 0o400}})
        mounts.append({"name": "age-identity", "mountPath": "/etc/tenangdb/age", "readOnly": True})
    if rclone:
        volumes.append({"name": "rclone", "secret": {"secretName": "tenangdb-rclone", "defaultMode": 0o400,
                                                     "optional": True}})
        mounts.append({"name": "rclone", "mountPath": "/etc/tenangdb/rclone", "readOnly": True})
    return volumes, mounts


def _container(name: str, args: list[str], *, identity: bool, rclone: bool) -> tuple[dict, list[dict]]:
    volumes, mounts = _volumes(identity=identity, rclone=rclone)
    container = {
        "name": name, "image": IMAGE, "imagePullPolicy": "IfNotPresent", "args": args,
        "env": _env(), "volumeMounts": mounts, "securityContext": _security_context(),
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
    }
    return container, volumes


def _cronjob(name: str, schedule: str, args: list[str], *, identity: bool, rclone: bool,
             env: list[dict] | None = None) -> dict:
    container, volumes = _container(name, args, identity=identity, rclone=rclone)
    container["env"] += env or []
    return {
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app.kubernetes.io/name": "tenangdb"}},
        "spec": {
            "schedule": schedule, "concurrencyPolicy": "Forbid", "startingDeadlineSeconds": 3600,
            "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 3,
            "jobTemplate": {"spec": {"backoffLimit": 1, "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "tenangdb", "app.kubernetes.io/component": name}},
                "spec": {"restartPolicy": "Never", "automountServiceAccountToken": False,
                         "securityContext": _pod_security(), "containers": [container], "volumes": volumes},
            }}},
        },
    }


def manifests() -> list[dict]:
    exporter, exporter_volumes = _container("exporter", ["exporter"], identity=False, rclone=False)
    exporter["ports"] = [{"name": "metrics", "containerPort": 9090}]
    exporter["readinessProbe"] = {"httpGet": {"path": "/healthz", "port": "metrics"}, "periodSeconds": 30}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": "tenangdb-config", "namespace": NAMESPACE},
         "data": {"config.yaml": CONFIG}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
         "metadata": {"name": "tenangdb-data", "namespace": NAMESPACE},
         # The exporter reads what the jobs write: ReadWriteMany, or ReadWriteOnce when every
         # pod lands on one node.
         "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "50Gi"}}}},
        _cronjob("tenangdb-backup", "0 2 * * *", ["backup", "--yes"], identity=True, rclone=True),
        _cronjob("tenangdb-verify", "0 6 * * *", ["verify", "--latest"], identity=True, rclone=False),
        # The image has no mariadbd for a sandbox: the drill loads a scratch database on the
        # configured server (created under a unique name, dropped afterwards).
        # Its downloads go to the data volume: /tmp is a small emptyDir.
        _cronjob("tenangdb-drill", "0 5 * * 6", ["drill", "--target", "server"], identity=True, rclone=True,
                 env=[{"name": "TMPDIR", "value": DATA}]),
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "tenangdb-exporter", "namespace": NAMESPACE,
                      "labels": {"app.kubernetes.io/name": "tenangdb"}},
         "spec": {"replicas": 1,
                  "selector": {"matchLabels": {"app.kubernetes.io/component": "exporter"}},
                  "template": {
                      "metadata": {"labels": {"app.kubernetes.io/name": "tenangdb",
                                              "app.kubernetes.io/component": "exporter"}},
                      "spec": {"automountServiceAccountToken": False, "securityContext": _pod_security(),
                               "containers": [exporter], "volumes": exporter_volumes}}}},
        _archiver(),
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "tenangdb-exporter", "namespace": NAMESPACE,
                      "labels": {"app.kubernetes.io/name": "tenangdb"}},
         "spec": {"selector": {"app.kubernetes.io/component": "exporter"},
                  "ports": [{"name": "metrics", "port": 9090, "targetPort": "metrics"}]}},
    ]


def _archiver() -> dict:
    """`tenangdb binlog` runs for good: one replica, never two at once (Recreate; the archive's
    lock would refuse the second anyway), and SIGTERM at a rollout ends it cleanly (a file in
    transfer is done again by the next pod)."""
    container, volumes = _container("binlog", ["binlog"], identity=True, rclone=False)
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "tenangdb-binlog", "namespace": NAMESPACE, "labels": {"app.kubernetes.io/name": "tenangdb"}},
        "spec": {"replicas": 1, "strategy": {"type": "Recreate"},
                 "selector": {"matchLabels": {"app.kubernetes.io/component": "binlog"}},
                 "template": {
                     "metadata": {"labels": {"app.kubernetes.io/name": "tenangdb",
                                             "app.kubernetes.io/component": "binlog"}},
                     "spec": {"automountServiceAccountToken": False, "securityContext": _pod_security(),
                              "terminationGracePeriodSeconds": 60, "containers": [container],
                              "volumes": volumes}}},
    }


class _Dumper(yaml.SafeDumper):
    pass


def _text(dumper: yaml.SafeDumper, value: str):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def render_manifests() -> str:
    header = ("# TenangDB on Kubernetes: generated by `python -m tenangdb.deploy deploy`; edit the\n"
              "# generator (src/tenangdb/deploy/kubernetes.py), not this file.\n"
              "# Secrets referenced (create them first, see README):\n"
              "#   tenangdb-secrets      keys db-password, metrics-password\n"
              "#   tenangdb-age-identity key age-identity.txt (from `tenangdb key generate`)\n"
              "#   tenangdb-rclone       key rclone.conf (optional, for uploads)\n")
    return header + yaml.dump_all(manifests(), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100)


DOCKERFILE = f"""\
# TenangDB container image. Build from the repository root:
#   docker build -f deploy/Dockerfile -t {IMAGE} .
# Runs as uid {UID} and writes only to /tmp and {DATA}, so it runs with a read-only root filesystem.
# Generated by `python -m tenangdb.deploy deploy` (src/tenangdb/deploy/kubernetes.py).
FROM python:3.11-slim-bookworm

# The tools TenangDB drives: the MariaDB client (mariadb-dump, mariadb), mydumper/myloader,
# zstd/xz, rclone.
RUN apt-get update \\
 && apt-get install -y --no-install-recommends mariadb-client mydumper zstd xz-utils rclone \\
      ca-certificates \\
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid {UID} tenangdb \\
 && useradd --system --uid {UID} --gid {UID} --home-dir {DATA} --no-create-home \\
      --shell /usr/sbin/nologin tenangdb

COPY pyproject.toml README.md /src/
COPY src /src/src
RUN pip install --no-cache-dir /src && rm -rf /src

# The original image's paths (/tenangdb, /tenangdb-exporter), which its manifests name, and its
# entrypoint's routing: `tenangdb ...` or `tenangdb-exporter ...` may come first.
RUN ln -s /usr/local/bin/tenangdb /tenangdb \\
 && ln -s /usr/local/bin/tenangdb-exporter /tenangdb-exporter \\
 && printf '%s\\n' '#!/bin/sh' \\
      'case "$1" in' \\
      '  tenangdb-exporter) shift; exec tenangdb-exporter "$@" ;;' \\
      '  tenangdb) shift ;;' \\
      'esac' \\
      'exec tenangdb "$@"' > /usr/local/bin/tenangdb-entrypoint \\
 && chmod 755 /usr/local/bin/tenangdb-entrypoint

ENV PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1 \\
    HOME={DATA} \\
    XDG_CACHE_HOME=/tmp/.cache \\
    TENANGDB_CONFIG=/etc/tenangdb/config/config.yaml

USER {UID}:{UID}
WORKDIR {DATA}
ENTRYPOINT ["tenangdb-entrypoint"]
CMD ["--help"]
"""

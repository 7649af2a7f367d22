"""systemd units for a TenangDB host: backup, verify and cleanup (each a oneshot service with a
timer) and the metrics exporter, hardened as docs/SECURITY.md describes.

Secrets never sit in a unit or in the config: the secrets file and the age identity are handed
over with `LoadCredential=` (systemd reads the root-only 0600 files and gives the service a
private copy under `%d`, its credentials directory), and `Environment=` points TenangDB at those
copies. There is deliberately no `Requires=mysqld.service`: the database may live elsewhere;
`After=` on the usual local server units only orders the start when one exists.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

SECRETS_CREDENTIAL = "secrets.env"
IDENTITY_CREDENTIAL = "age-identity.txt"


@dataclass
class UnitParams:
    binary: str  # absolute path of the tenangdb executable
    config: str
    user: str = "tenangdb"
    group: str = "tenangdb"
    secrets_file: str | None = None
    key_file: str | None = None
    writable: list[str] = field(default_factory=list)  # must exist: backup and state folders
    optional_writable: list[str] = field(default_factory=list)  # e.g. the log folder
    exporter: bool = False
    drill: bool = False  # an upload destination to rehearse recovery from
    binlog: bool = False  # binlog.enabled: the archiver runs as a service
    backup_schedule: str = "*-*-* 02:00:00"
    verify_schedule: str = "*-*-* 06:00:00"
    cleanup_schedule: str = "Sun *-*-* 03:00:00"
    drill_schedule: str = "Sat *-*-* 05:00:00"

    @property
    def protect_home(self) -> str:
        # An installation under a home folder must stay readable to run at all.
        if self.binary.startswith(("/home/", "/root/")):
            return "read-only"
        return "yes"


def _exec(p: UnitParams, *args: str) -> str:
    return " ".join(shlex.quote(part) for part in (p.binary, "--config", p.config, *args))


def _hardening(p: UnitParams, *, network_only: bool = False) -> list[str]:
    lines = [
        "# Hardening (docs/SECURITY.md): no new privileges, no capabilities, a read-only system",
        "# and no home folders; only the folders below are writable.",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "AmbientCapabilities=",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "PrivateMounts=yes",
        "ProtectSystem=strict",
        f"ProtectHome={p.protect_home}",
    ]
    writable = " ".join(shlex.quote(path) for path in p.writable)
    optional = " ".join("-" + shlex.quote(path) for path in p.optional_writable)
    paths = " ".join(part for part in (writable, optional) if part)
    if paths:
        lines.append(f"ReadWritePaths={paths}")
    lines += [
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "ProtectProc=invisible",
        "RestrictSUIDSGID=yes",
        "RestrictRealtime=yes",
        "RestrictNamespaces=yes",
        "LockPersonality=yes",
        "RemoveIPC=yes",
        "SystemCallArchitectures=native",
        "SystemCallFilter=@system-service",
        "SystemCallFilter=~@privileged",
        "# A refused call fails with EPERM instead of killing the tool (Go's rclone raises its",
        "# file limit at start and carries on when it may not).",
        "SystemCallErrorNumber=EPERM",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "UMask=0027",
        "LimitNOFILE=65536",
        "LimitNPROC=4096",
    ]
    return lines


def _credentials(p: UnitParams, *, identity: bool) -> list[str]:
    lines = []
    if p.secrets_file:
        lines += [f"LoadCredential={SECRETS_CREDENTIAL}:{p.secrets_file}",
                  f"Environment=TENANGDB_SECRETS_FILE=%d/{SECRETS_CREDENTIAL}"]
    if identity and p.key_file:
        lines += [f"LoadCredential={IDENTITY_CREDENTIAL}:{p.key_file}",
                  f"Environment=TENANGDB_BACKUP_ENCRYPTION_KEY_FILE=%d/{IDENTITY_CREDENTIAL}"]
    return lines


def _oneshot(p: UnitParams, description: str, command: list[str], timeout: str) -> str:
    lines = [
        "[Unit]",
        f"Description={description}",
        "Wants=network-online.target",
        "After=network-online.target mariadb.service mysql.service mysqld.service",
        "",
        "[Service]",
        "Type=oneshot",
        f"User={p.user}",
        f"Group={p.group}",
        f"ExecStart={_exec(p, *command)}",
        *_credentials(p, identity=True),
        f"TimeoutStartSec={timeout}",
        "# Be gentle with the database host's CPU and disks.",
        "Nice=10",
        "IOSchedulingClass=best-effort",
        "IOSchedulingPriority=7",
        *_hardening(p),
        "",
    ]
    return "\n".join(lines)


def _timer(description: str, schedule: str, delay: str) -> str:
    return "\n".join([
        "[Unit]",
        f"Description={description}",
        "",
        "[Timer]",
        f"OnCalendar={schedule}",
        f"RandomizedDelaySec={delay}",
        "Persistent=true",
        "",
        "[Install]",
        "WantedBy=timers.target",
        "",
    ])


def _exporter(p: UnitParams) -> str:
    return "\n".join([
        "[Unit]",
        "Description=TenangDB metrics exporter",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        f"User={p.user}",
        f"Group={p.group}",
        f"ExecStart={_exec(p, 'exporter')}",
        *_credentials(p, identity=False),
        "Restart=on-failure",
        "RestartSec=5",
        *_hardening(p),
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ])


def _binlog(p: UnitParams) -> str:
    """The archiver runs for good (a cycle every binlog.max_lag / 2): SIGTERM ends it cleanly
    (exit 0; a file in transfer is abandoned and done again next time). A failed cycle (the
    server restarting) is retried inside; what escapes is a refusal (2: configuration, 4: the
    archive belongs to another server or history), which no restart would cure."""
    return "\n".join([
        "[Unit]",
        "Description=TenangDB binary log archiver (point-in-time recovery)",
        "Wants=network-online.target",
        "After=network-online.target mariadb.service mysql.service mysqld.service",
        "",
        "[Service]",
        "Type=simple",
        f"User={p.user}",
        f"Group={p.group}",
        f"ExecStart={_exec(p, 'binlog')}",
        *_credentials(p, identity=True),
        "Restart=on-failure",
        "RestartSec=30",
        "RestartPreventExitStatus=2 4",
        "SuccessExitStatus=130",
        "TimeoutStopSec=60",
        "Nice=10",
        "IOSchedulingClass=best-effort",
        "IOSchedulingPriority=7",
        *_hardening(p),
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ])


def render_units(p: UnitParams) -> dict[str, str]:
    """File name -> content of every unit."""
    units = {
        "tenangdb.service": _oneshot(p, "TenangDB backup", ["backup", "--yes"], "12h"),
        "tenangdb.timer": _timer("Daily TenangDB backup", p.backup_schedule, "15min"),
        "tenangdb-verify.service": _oneshot(p, "TenangDB verification of the latest backups",
                                            ["verify", "--latest"], "6h"),
        "tenangdb-verify.timer": _timer("Daily TenangDB verification", p.verify_schedule, "15min"),
        "tenangdb-cleanup.service": _oneshot(p, "TenangDB cleanup of expired backups", ["cleanup", "--yes"], "2h"),
        "tenangdb-cleanup.timer": _timer("Weekly TenangDB cleanup", p.cleanup_schedule, "30min"),
    }
    if p.drill:
        units["tenangdb-drill.service"] = _oneshot(p, "TenangDB recovery drill of the newest off-site backups",
                                                   ["drill"], "12h")
        units["tenangdb-drill.timer"] = _timer("Weekly TenangDB recovery drill", p.drill_schedule, "1h")
    if p.exporter:
        units["tenangdb-exporter.service"] = _exporter(p)
    if p.binlog:
        units["tenangdb-binlog.service"] = _binlog(p)
    return units


# Enabled by `init --deploy-systemd`; the cleanup timer deletes backups, so it is written but
# left for the operator to enable once the retention policy is what they want. The drill only
# reads the remote and a scratch target.
ENABLE = ("tenangdb.timer", "tenangdb-verify.timer", "tenangdb-drill.timer")


def example_units() -> dict[str, str]:
    """The units `init --deploy-systemd` writes for a root install in /opt/tenangdb (deploy/systemd/)."""
    header = ("# Example written by `python -m tenangdb.deploy`; `tenangdb init --deploy-systemd` writes\n"
              "# these with your own paths.\n")
    units = render_units(UnitParams(
        binary="/opt/tenangdb/venv/bin/tenangdb", config="/etc/tenangdb/config.yaml",
        secrets_file="/etc/tenangdb/secrets.env", key_file="/etc/tenangdb/age-identity.txt",
        writable=["/var/backups/tenangdb", "/var/lib/tenangdb"], optional_writable=["/var/log/tenangdb"],
        exporter=True, drill=True, binlog=True))
    return {name: header + text for name, text in units.items()}

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
    # backup.engine: mariabackup reads the server's data directory: the backup unit gets it
    # read-only, and its group (when not root's) as a supplementary group.
    datadir: str | None = None
    datadir_group: str | None = None

    @property
    def protect_home(self) -> str:
        # An installation under a home folder must stay readable to run at all.
        if self.binary.startswith(("/home/", "/root/")):
            return "read-only"
        return "yes"


# The folders ProtectHome= and PrivateTmp= hide from a unit.
HOMES = ("/home", "/root", "/run/user")
TEMPORARY = ("/tmp", "/var/tmp")


def _below(path: str, folders: tuple[str, ...]) -> bool:
    return any(path == folder or path.startswith(folder + "/") for folder in folders)


def hidden_by(path: str, unit: dict[str, str]) -> str | None:
    """The setting of a unit (its key=value pairs) that keeps `path` from its processes, unless
    the unit binds it in; None when they see it."""
    bound = " ".join(unit.get(key, "") for key in ("BindReadOnlyPaths", "BindPaths")).split()
    if any(_below(path, (entry.lstrip("-+").split(":", 1)[0].rstrip("/"),)) for entry in bound):
        return None
    home = unit.get("ProtectHome", "no")
    if _below(path, HOMES) and home not in ("no", "false", "read-only"):
        return f"ProtectHome={home}"
    if _below(path, TEMPORARY) and unit.get("PrivateTmp") in ("yes", "true"):
        return "PrivateTmp=yes"
    return None


def _exec(p: UnitParams, *args: str) -> str:
    return " ".join(shlex.quote(part) for part in (p.binary, "--config", p.config, *args))


def _hardening(p: UnitParams, *, reads_datadir: bool = False) -> list[str]:
    home = p.protect_home
    if reads_datadir and p.datadir and _below(p.datadir, HOMES) and home == "yes":
        home = "tmpfs"  # an empty, read-only /home into which the data directory is bound
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
        f"ProtectHome={home}",
    ]
    writable = " ".join(shlex.quote(path) for path in p.writable)
    optional = " ".join("-" + shlex.quote(path) for path in p.optional_writable)
    paths = " ".join(part for part in (writable, optional) if part)
    if paths:
        lines.append(f"ReadWritePaths={paths}")
    if reads_datadir and p.datadir:
        lines += _datadir(p, home)
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


def _datadir(p: UnitParams, home: str) -> list[str]:
    """The backup unit's view of the server's data directory: read-only (the group may write the
    server's files, this unit never does), bound in where ProtectHome= or PrivateTmp= hide it."""
    lines = ["# mariabackup reads the server's data directory (backup.engine: mariabackup): read-only",
             "# here, through the directory's group when the server's modes let the group read it."]
    if p.datadir_group:
        lines.append(f"SupplementaryGroups={p.datadir_group}")
    folder = shlex.quote(p.datadir.rstrip("/") or "/")
    hidden = hidden_by(p.datadir.rstrip("/"), {"ProtectHome": home, "PrivateTmp": "yes"})
    lines.append(f"{'BindReadOnlyPaths' if hidden else 'ReadOnlyPaths'}={folder}")
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


def _oneshot(p: UnitParams, description: str, command: list[str], timeout: str, *,
             reads_datadir: bool = False) -> str:
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
        *_hardening(p, reads_datadir=reads_datadir),
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
        "tenangdb.service": _oneshot(p, "TenangDB backup", ["backup", "--yes"], "12h", reads_datadir=True),
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

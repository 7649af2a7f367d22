"""The logrotate policy for TenangDB's log file, as `init --deploy-systemd` installs it in
/etc/logrotate.d/tenangdb: daily, thirty days kept, compressed from the second day on.

Rotation renames the file and makes a new one (`create`); every TenangDB process notices the
rename at its next line and reopens the path (logs.py), so neither `copytruncate`, which can
lose lines, nor a signal to the exporter is needed. `su` makes logrotate work in the log folder
as the account that owns it, not as root, so a link planted there cannot turn root's renames
against another file.
"""

from __future__ import annotations

import os
import re

from tenangdb.deploy.host import SHARED, DeployError

POLICY_PATH = "/etc/logrotate.d/tenangdb"
KEEP_DAYS = 30

_PLAIN = re.compile(r"[A-Za-z0-9_./@+-]+")


def render(log_file: str, user: str, group: str) -> str:
    """The policy for one log file, rotated with the owner `user:group` (the service account).
    In a shared system folder (a log file right in /var/log), which root owns, logrotate stays
    root: the service account could not rename anything there."""
    if not log_file.startswith("/"):
        raise DeployError(f"logrotate needs an absolute log file path, not {log_file!r}")
    if any(c in log_file for c in '"\n{}'):
        raise DeployError(f"the log file path {log_file!r} cannot be written in a logrotate policy")
    target = log_file if _PLAIN.fullmatch(log_file) else f'"{log_file}"'
    return "\n".join([
        "# Written by `tenangdb init --deploy-systemd`. TenangDB reopens its log file once it has",
        "# been renamed, so rotation needs no copytruncate and no signal.",
        f"{target} {{",
        *([] if os.path.dirname(os.path.normpath(log_file)) in SHARED else [f"    su {user} {group}"]),
        "    daily",
        f"    rotate {KEEP_DAYS}",
        "    compress",
        "    delaycompress",
        "    missingok",
        "    notifempty",
        f"    create 0640 {user} {group}",
        "}",
        "",
    ])

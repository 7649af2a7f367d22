"""`tenangdb doctor`: the pre-production checklist of docs/SECURITY.md as a command.

Each check says pass, warn or fail, what it saw, and the fix to apply. A check never changes
anything on the machine (the upload check writes one probe object and deletes it again).
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tenangdb.config.loader import LoadedConfig, plaintext_secrets, read_raw
from tenangdb.errors import TenangDBError

PASS, WARN, FAIL = "pass", "warn", "fail"
LOOPBACK = ("127.0.0.1", "::1", "localhost")


@dataclass
class Check:
    name: str
    status: str
    message: str
    fix: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def _owner(st: os.stat_result) -> str:
    import grp
    import pwd
    try:
        user = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        user = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return f"{user}:{group}"


def _mode(st: os.stat_result) -> str:
    return f"{stat.S_IMODE(st.st_mode):04o}"


def config_review(loaded: LoadedConfig) -> Check | None:
    """A config of the original TenangDB not yet reviewed: its cleanup only shows its plan."""
    if not loaded.from_original:
        return None
    return Check("config-review", WARN, f"{loaded.path} is a config of the original TenangDB, not yet reviewed: "
                 "cleanup only shows its plan and its backup.timeout is not enforced until then",
                 "read `tenangdb config --migrate`, then acknowledge it with `tenangdb config --migrate --write`")


def config_file(loaded: LoadedConfig) -> Check:
    if loaded.path is None:
        return Check("config-file", WARN, "no config file: only defaults and environment variables",
                     "write one with `tenangdb init`")
    path = loaded.path.resolve()
    st = path.stat()
    mode = stat.S_IMODE(st.st_mode)
    seen = f"{path} is {_mode(st)} {_owner(st)}"
    if mode & 0o022:
        return Check("config-file", FAIL, f"{seen}: others can change what the backups do",
                     f"chmod 0640 {path}")
    if mode & 0o004:
        # A plaintext secret in it would have stopped the loader; what is left is the layout.
        return Check("config-file", WARN, f"{seen}: every user can read it (which server, account and "
                     "folders)", f"chmod 0640 {path}")
    if os.geteuid() == 0 and st.st_uid != 0:
        return Check("config-file", WARN, f"{seen}: the account that runs backups could rewrite its own config",
                     f"chown root:{_owner(st).split(':')[1]} {path}")
    return Check("config-file", PASS, seen)


def plaintext(loaded: LoadedConfig) -> Check:
    if loaded.path is None:
        return Check("plaintext-secrets", PASS, "no config file")
    found = plaintext_secrets(read_raw(loaded.path))
    if found:
        return Check("plaintext-secrets", FAIL, f"{loaded.path} holds {', '.join(found)} in plain text",
                     "move each value to the secrets file (NAME=\"value\", mode 0600, named by secrets_file) "
                     "and write ${NAME} in the config")
    return Check("plaintext-secrets", PASS, f"no plaintext secret in {loaded.path}")


def secrets_path(loaded: LoadedConfig) -> str | None:
    """The secrets file the config reads, as the loader finds it (None: none)."""
    raw = os.environ.get("TENANGDB_SECRETS_FILE") or loaded.settings.secrets_file
    if not raw:
        return None
    path = Path(raw)
    if not path.is_absolute() and loaded.path is not None:
        path = loaded.path.parent / path  # as the loader reads it
    return str(path)


def secret_file(name: str, path: str | None, *, group_ok: bool = False) -> Check | None:
    """A file holding a secret: 0600 (0640 where a group must read it), never other-readable."""
    if not path:
        return None
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return Check(name, FAIL, f"{path} does not exist", "create it, mode 0600 (see `tenangdb init`)")
    except PermissionError:
        return Check(name, WARN, f"cannot examine {path} as this user", "run tenangdb doctor as root")
    mode = stat.S_IMODE(st.st_mode)
    seen = f"{path} is {_mode(st)} {_owner(st)}"
    allowed = 0o640 if group_ok else 0o600
    if mode & ~allowed & 0o777:
        return Check(name, FAIL, f"{seen}: readable or writable beyond its owner{' and group' if group_ok else ''}",
                     f"chmod {allowed:04o} {path}")
    return Check(name, PASS, seen)


def folder(name: str, path: str | None, *, required: bool) -> Check | None:
    if not path:
        return None
    p = Path(path)
    if not p.exists():
        if required:
            return Check(name, FAIL, f"{p} does not exist", f"mkdir -m 0750 {p} (then chown it to the "
                         "account that runs backups)")
        return None
    st = p.stat()
    mode = stat.S_IMODE(st.st_mode)
    seen = f"{p} is {_mode(st)} {_owner(st)}"
    if mode & 0o007:
        return Check(name, FAIL, f"{seen}: other users can get in",
                     f"chmod 0750 {p}; find {p} -type d -exec chmod 0750 {{}} +; "
                     f"find {p} -type f -exec chmod 0640 {{}} +")
    if mode & 0o020:
        return Check(name, WARN, f"{seen}: the group can write into it", f"chmod 0750 {p}")
    if not os.access(p, os.W_OK):
        return Check(name, WARN, f"{seen}: not writable by this user", "run as the account that runs backups")
    return Check(name, PASS, seen)


def _unsafe_path(path: Path) -> str | None:
    """Why someone other than root (or us) could replace this file, or None."""
    me = os.geteuid()
    probe = path
    while True:
        try:
            st = probe.stat()
        except OSError:
            return f"cannot examine {probe}"
        mode = stat.S_IMODE(st.st_mode)
        if st.st_uid not in (0, me):
            return f"{probe} belongs to uid {st.st_uid}"
        sticky = bool(mode & stat.S_ISVTX) and probe != path
        if mode & 0o022 and not sticky:
            return f"{probe} is {mode:04o}: writable by {'others' if mode & 0o002 else 'its group'}"
        if probe.parent == probe:
            return None
        probe = probe.parent


def binary(paths: list[Path] | None = None) -> Check:
    """The program that runs as the service, its Python and its package: nobody but root may
    be able to replace them, or a backup run would run their code."""
    import tenangdb
    if paths is None:
        exe = shutil.which("tenangdb") or str(Path(sys.executable).parent / "tenangdb")
        paths = [Path(exe), Path(os.path.realpath(sys.executable)), Path(tenangdb.__file__).resolve().parent]
    paths = [p for p in paths if p.exists()]
    for path in paths:
        why = _unsafe_path(path)
        if why:
            return Check("binary", FAIL, f"{path}: {why}",
                         "install tenangdb into a root-owned location (for example a venv under /opt/tenangdb) "
                         "with no group or world write permission on it or its parents")
    return Check("binary", PASS, "only root can replace " + ", ".join(str(p) for p in paths))


_REINSTALL = "install it from a wheel you trust: pip install --force-reinstall --no-deps tenangdb-VERSION-py3-none-any.whl"


def integrity(name: str = "tenangdb") -> Check:
    """The guide's "verify binary integrity": every installed file of the package against the
    SHA-256 the wheel recorded when pip installed it (RECORD), so a changed or deleted file
    shows even where its owner and mode look right (check "binary"). A file in the package's
    folder that RECORD does not list fails too: a module dropped in beside ours imports like ours."""
    import tenangdb
    from importlib import metadata

    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return Check("integrity", WARN, f"{name} is not installed as a package (run from a source tree): no "
                     "recorded hashes to check its files against", _REINSTALL)
    if source := _editable(dist):
        return Check("integrity", WARN, f"a development (editable) install: the files under {source} "
                     "have no recorded hashes to check", _REINSTALL)
    package = Path(os.path.normpath(tenangdb.__file__)).parent
    installed = Path(os.path.normpath(dist.locate_file(name)))
    if package != installed:
        return Check("integrity", WARN, f"the running {name} ({package}) is not the installed package "
                     f"({installed}), whose hashes are the only ones recorded", _REINSTALL)
    listed: set[Path] = set()
    modified, missing, checked = [], [], 0
    for entry in dist.files or []:
        path = Path(os.path.normpath(dist.locate_file(entry)))
        listed.add(path)
        if entry.hash is None:
            continue  # RECORD itself, and the .pyc files pip compiled after writing it
        checked += 1
        found = _file_digest(path, entry.hash.mode)
        shown = str(path) if str(entry).startswith("..") else str(entry)  # the scripts, in bin/
        if found is None:
            missing.append(shown)
        elif found != entry.hash.value:
            modified.append(shown)
    added = sorted(str(p.relative_to(package.parent)) for p in package.rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts and p not in listed)
    if modified or missing or added:
        parts = [f"{kind}: {', '.join(names[:5])}{f' (and {len(names) - 5} more)' if len(names) > 5 else ''}"
                 for kind, names in (("modified", modified), ("missing", missing), ("not installed by pip", added))
                 if names]
        return Check("integrity", FAIL, f"{name} {dist.version} is not as installed: {'; '.join(parts)}",
                     _REINSTALL + "; then find out who changed it (docs/SECURITY.md, incident response)")
    return Check("integrity", PASS, f"all {checked} files of {name} {dist.version} match the SHA-256 "
                 f"recorded at install ({installed.parent})")


def _editable(dist) -> str | None:
    """The source folder of an editable (pip install -e) install, or None."""
    import json

    try:
        direct = json.loads(dist.read_text("direct_url.json") or "{}")
    except ValueError:
        return None
    if isinstance(direct, dict) and (direct.get("dir_info") or {}).get("editable"):
        return str(direct.get("url", "?")).removeprefix("file://")
    return None


def _file_digest(path: Path, mode: str) -> str | None:
    """RECORD's form of a file's hash (urlsafe base64, no padding); None when the file is gone."""
    import base64
    import hashlib

    try:
        digest = hashlib.new(mode)
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError):
        return ""  # unreadable, or an unknown hash name: never a match
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


# What the guide asks of the backup service, and what `init --deploy-systemd` writes.
UNIT_REQUIRED = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes"}
UNIT_RECOMMENDED = ("ProtectHome", "ProtectKernelTunables", "ProtectKernelModules", "ProtectControlGroups",
                    "RestrictSUIDSGID", "RestrictRealtime", "RestrictAddressFamilies", "ReadWritePaths",
                    "CapabilityBoundingSet", "LimitNOFILE")


def _can(uid: int, gids: set[int], path: Path, want: int) -> bool:
    """Would this account get `want` (4 read, 2 write, 1 search) on path by its mode bits?"""
    try:
        st = path.stat()
    except OSError:
        return False
    mode = stat.S_IMODE(st.st_mode)
    if uid == 0:
        return True
    if st.st_uid == uid:
        return mode >> 6 & want == want
    if st.st_gid in gids:
        return mode >> 3 & want == want
    return mode & want == want


def _reachable(uid: int, gids: set[int], path: Path) -> bool:
    return all(_can(uid, gids, parent, 1) for parent in path.parents)


def _service_access(user: str, loaded: LoadedConfig | None) -> str | None:
    """Why the service account cannot read its config or write its folders, or None."""
    import grp
    import pwd
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return f"User={user} does not exist on this machine"
    if loaded is None or loaded.path is None:
        return None
    gids = {entry.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
    config = loaded.path.resolve()
    if not (_reachable(entry.pw_uid, gids, config) and _can(entry.pw_uid, gids, config, 4)):
        return f"{user} cannot read {config}"
    directory = Path(loaded.settings.backup.directory)
    if directory.exists() and not (_reachable(entry.pw_uid, gids, directory)
                                   and _can(entry.pw_uid, gids, directory, 3)):
        return f"{user} cannot write into {directory}"
    return None


def _unit_values(path: Path) -> dict[str, str] | None:
    """The settings of an installed unit (the last one of a key repeated), or None without it."""
    if not path.is_file():
        return None
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith(("#", ";", "[")):
            values[key.strip()] = value.strip()
    return values


def service_unit(unit_dir: str, loaded: LoadedConfig | None = None) -> Check | None:
    """The installed tenangdb.service: a non-root user, the hardening, no hard database dependency."""
    path = Path(unit_dir) / "tenangdb.service"
    values = _unit_values(path)
    if values is None:
        return None
    user = values.get("User", "")
    if user in ("", "root", "0"):
        return Check("service-unit", FAIL, f"{path} runs backups as root",
                     f"set User=tenangdb in {path} (or rerun: tenangdb init --deploy-systemd --force)")
    wrong = [f"{k}={values.get(k, '(unset)')}" for k, v in UNIT_REQUIRED.items() if values.get(k) != v]
    if wrong:
        return Check("service-unit", FAIL, f"{path}: {', '.join(wrong)}",
                     "; ".join(f"set {k}={v}" for k, v in UNIT_REQUIRED.items()) + f" in {path}")
    denied = _service_access(user, loaded)
    if denied:
        return Check("service-unit", FAIL, f"{path}: {denied}: the timer's runs will fail",
                     f"chgrp {values.get('Group', user)} on the config and chmod 0640 it; chown {user} the "
                     "backup folders (tenangdb init --deploy-systemd --force does both)")
    problems = [k for k in UNIT_RECOMMENDED if k not in values]
    if "Requires" in values and "mysql" in values["Requires"] + values.get("BindsTo", ""):
        problems.append(f"Requires={values['Requires']} (a remote or differently named server breaks it)")
    if problems:
        return Check("service-unit", WARN, f"{path} lacks {', '.join(problems)}",
                     "rewrite the units: tenangdb init --deploy-systemd --force")
    return Check("service-unit", PASS, f"{path} runs as {user}, hardened")


def tools(loaded: LoadedConfig) -> Check:
    from tenangdb.mysql import engines
    try:
        # The streaming tool is always needed: it is every other engine's fallback.
        seen = engines.by_name(engines.DEFAULT, loaded.settings.database).tools_seen()
        chosen = engines.choose(loaded.settings)
        if chosen.name != engines.DEFAULT:
            seen += chosen.tools_seen()
    except TenangDBError as exc:
        return Check("tools", FAIL, str(exc), "apt-get install mariadb-client (and mydumper for the parallel "
                     "engine)")
    return Check("tools", PASS, "; ".join(seen))


def database(loaded: LoadedConfig) -> list[Check]:
    """Grants (least privilege) and TLS, over one connection."""
    from tenangdb.actions.init import grant_advice
    from tenangdb.mysql import inventory
    from tenangdb.mysql.connection import connect, endpoint_from, tls_cipher

    db = loaded.settings.database
    ep = endpoint_from(db)
    local = bool(ep.socket) or ep.host in LOOPBACK
    checks: list[Check] = []
    tls: Check | None = None
    if local:
        tls = Check("database-tls", PASS, f"{ep.describe()} is on this machine")
    elif db.ssl_mode in ("DISABLED", "PREFERRED"):
        tls = Check("database-tls", FAIL, f"{ep.describe()} is remote and database.ssl_mode is {db.ssl_mode}: "
                    "the password and the data may cross the network in clear",
                    "set database.ssl_mode: VERIFY_IDENTITY and database.ssl_ca to the server's CA")
    try:
        conn = connect(ep)
    except TenangDBError as exc:
        checks.append(Check("database-grants", FAIL, str(exc), "check database.* in the config"))
        checks.append(tls or Check("database-tls", FAIL, f"cannot connect to check TLS: {exc}"))
        return checks
    try:
        server = inventory.server_info(conn)
        names = loaded.settings.backup.databases or ["all"]
        from tenangdb.mysql import engines
        try:
            engine = engines.choose(loaded.settings).name
        except TenangDBError:
            engine = engines.DEFAULT
        report, statements = grant_advice(conn, server, names, engine, archiver=loaded.settings.binlog.enabled)
        if tls is None:
            cipher = tls_cipher(conn)
            if not cipher:
                tls = Check("database-tls", FAIL, f"the connection to {ep.describe()} is not encrypted",
                            "enable TLS on the server and set database.ssl_mode: VERIFY_IDENTITY")
            elif db.ssl_mode == "REQUIRED":
                tls = Check("database-tls", WARN, f"encrypted ({cipher}) but the server's certificate is not "
                            "verified", "set database.ssl_mode: VERIFY_IDENTITY and database.ssl_ca")
            else:
                tls = Check("database-tls", PASS, f"encrypted ({cipher}), certificate verified")
    finally:
        conn.close()
    account = f"'{report.user}'@'{report.host}'"
    fix = "run as an administrator: " + " ".join(statements)
    if report.missing_required:
        missing = "; ".join(f"{n.privilege} on {w}" for n, w in report.missing_required)
        checks.append(Check("database-grants", FAIL, f"{account} lacks {missing}", fix))
    elif report.excess:
        checks.append(Check("database-grants", WARN, f"{account} holds more than backups need: "
                            + "; ".join(report.excess), fix + " and REVOKE the rest"))
    elif report.missing_optional:
        missing = "; ".join(f"{n.privilege} on {w}" for n, w in report.missing_optional)
        checks.append(Check("database-grants", WARN, f"{account} lacks {missing}: backups will not record "
                            "the binlog position", fix))
    else:
        checks.append(Check("database-grants", PASS, f"{account} has what backups need and nothing more"))
    checks.append(tls)
    return checks


def binlog(loaded: LoadedConfig) -> list[Check]:
    """With binlog.enabled: the server's binary log as point-in-time recovery needs it, its
    retention against the archiver's lag, and the archiver's privileges (one connection)."""
    from tenangdb.mysql.connection import connect, endpoint_from

    cfg = loaded.settings.binlog
    if not cfg.enabled:
        return []
    try:
        conn = connect(endpoint_from(loaded.settings.database))
    except TenangDBError as exc:
        return [Check("binlog-server", FAIL, f"cannot connect to check the binary log: {exc}")]
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW GLOBAL VARIABLES WHERE Variable_name IN ('log_bin', 'binlog_format', "
                        "'binlog_expire_logs_seconds', 'expire_logs_days', 'max_binlog_total_size')")
            variables = {name.lower(): value for name, value in cur.fetchall()}
        from tenangdb.mysql import grants
        user, host, lines = grants.current_grants(conn)
        parsed, _roles = grants.parse_grants(lines)
    finally:
        conn.close()
    return [binlog_server(variables), binlog_retention(variables, cfg.max_lag),
            binlog_grants(parsed, user, host), binlog_archive(loaded)]


def binlog_archive(loaded: LoadedConfig) -> Check:
    """The archive itself: that it has begun, and the gaps it recorded (each one ends the
    point-in-time window of every base backup before it)."""
    from tenangdb.repository import binlogs as store

    directory = store.archive_directory(loaded.settings)
    try:
        records, gaps = store.records(directory), store.gaps(directory)
    except store.ArchiveError as exc:
        return Check("binlog-archive", FAIL, str(exc), "tenangdb verify --binlog says what is damaged")
    if not records:
        return Check("binlog-archive", WARN, f"nothing archived yet in {directory}",
                     "start the archiver: systemctl enable --now tenangdb-binlog.service (or tenangdb binlog --once)")
    seen = f"{len(records)} files in {directory} ({records[0].name}..{records[-1].name})"
    if gaps:
        missing = sum(len(gap.missing) for gap in gaps)
        return Check("binlog-archive", WARN, f"{seen}; {len(gaps)} gap(s) recorded ({missing} file(s) purged before "
                     f"they were archived, the last after {gaps[-1].after or 'the start'})",
                     "take a new base backup (the window restarts from it) and raise the server's "
                     "binlog_expire_logs_seconds")
    return Check("binlog-archive", PASS, seen + ", no gap recorded")


def binlog_server(variables: dict[str, str]) -> Check:
    """log_bin must be on. ROW format: each row event names its table's database (Table_map),
    so the replay's database filter and rename follow the data wherever the statement ran;
    with STATEMENT (and MIXED's statement half) only the session's default database is known,
    so a statement naming another database is refused for a rename, and one run from another
    database is skipped or refused (actions/pitr._check_statements)."""
    if str(variables.get("log_bin", "OFF")).upper() not in ("ON", "1"):
        return Check("binlog-server", FAIL, "the server's binary log is off (log_bin): there is nothing to archive",
                     "set log_bin=ON and binlog_format=ROW in the server's configuration and restart it")
    form = str(variables.get("binlog_format", "")).upper()
    if form != "ROW":
        return Check("binlog-server", WARN, f"binlog_format is {form or 'unknown'}: statements carry only the "
                     "database they ran in, so a replay refuses statements that name other databases and a "
                     "restore under another name cannot rewrite them; row events name each table's database",
                     "SET GLOBAL binlog_format=ROW and binlog_format=ROW in the server's configuration")
    return Check("binlog-server", PASS, "log_bin is on, binlog_format is ROW (each row event names its table's "
                 "database, so the replay filters and renames safely)")


def binlog_retention(variables: dict[str, str], max_lag: float) -> Check:
    """The server must keep each binlog file long after the archiver should have taken it: a file
    purged first is a gap. FAIL under twice max_lag (one missed cycle loses data), WARN under a
    day (an archiver down for a night loses data), PASS otherwise."""
    seconds = int(variables.get("binlog_expire_logs_seconds") or 0)
    if not seconds:
        seconds = int(float(variables.get("expire_logs_days") or 0) * 86400)
    by_size = int(variables.get("max_binlog_total_size") or 0)
    fix = ("SET GLOBAL binlog_expire_logs_seconds=604800 (7 days; and in the server's configuration)")
    if by_size:
        return Check("binlog-retention", WARN, f"the server purges its binlogs beyond {by_size} bytes "
                     "(max_binlog_total_size), however young: a burst of writes can purge a file before it is "
                     "archived", "SET GLOBAL max_binlog_total_size=0 and rely on binlog_expire_logs_seconds")
    if not seconds:
        return Check("binlog-retention", PASS, "the server never purges its binlogs by age (expire_logs_days and "
                     "binlog_expire_logs_seconds are 0): no gap from expiry, but watch its disk")
    shown = f"{seconds // 3600}h" if seconds >= 3600 else f"{seconds}s"
    if seconds < 2 * max_lag:
        return Check("binlog-retention", FAIL, f"the server keeps its binlogs {shown}, less than twice "
                     f"binlog.max_lag ({max_lag:.0f}s): one missed archiver cycle is a gap", fix)
    if seconds < 86400:
        return Check("binlog-retention", WARN, f"the server keeps its binlogs {shown}: an archiver stopped for "
                     "longer (a night, a weekend) leaves a gap", fix)
    return Check("binlog-retention", PASS, f"the server keeps its binlogs {shown}, well beyond binlog.max_lag "
                 f"({max_lag:.0f}s)")


def binlog_grants(parsed, user: str, host: str) -> Check:
    """REPLICATION SLAVE (read the binlog over the replication protocol), BINLOG MONITOR
    (SHOW BINARY LOGS; REPLICATION CLIENT before MariaDB 10.5), RELOAD (FLUSH BINARY LOGS
    closes the open file so that it can be archived; BINLOG ADMIN does not allow it: refused
    with error 1227 on MariaDB 10.11, as the test shows)."""
    from tenangdb.mysql import grants

    def lacks(privilege: str) -> bool:
        report = grants.check(parsed, [], [grants.Need(privilege, "global", "")], [], user=user, host=host)
        return bool(report.missing)
    missing = [p for p in ("REPLICATION SLAVE", "BINLOG MONITOR", "RELOAD") if lacks(p)]
    account = f"'{user}'@'{host}'"
    if missing:
        return Check("binlog-grants", FAIL, f"{account} lacks {', '.join(missing)}: the archiver cannot "
                     + "read, list or close the server's binary log files",
                     f"run as an administrator: GRANT {', '.join(missing)} ON *.* TO {account};")
    return Check("binlog-grants", PASS, f"{account} can read (REPLICATION SLAVE), list (BINLOG MONITOR) and close "
                 "(RELOAD) the server's binary log files")


def physical(loaded: LoadedConfig, unit_dir: str | None = None) -> Check | None:
    """With backup.engine: mariabackup, the tool reads the server's files: the server must be on
    this machine and its data directory readable by this user, and by the user of the installed
    tenangdb.service (through the unit's groups, and not hidden by its sandboxing). The backup is
    of the whole instance, which backup.databases does not narrow."""
    if loaded.settings.backup.engine != "mariabackup":
        return None
    from tenangdb.mysql import datadir as datadir_mod
    from tenangdb.mysql.connection import connect, endpoint_from

    named = loaded.settings.backup.databases
    note = (f"; backup.databases ({', '.join(named)}) does not narrow it: a physical backup is of the whole "
            "instance" if named and named != ["all"] else "; a physical backup is of the whole instance")
    ep = endpoint_from(loaded.settings.database)
    try:
        conn = connect(ep)
        try:
            folder = datadir_mod.locate(conn).path
        finally:
            conn.close()
    except Exception as exc:  # noqa: BLE001 - reported as the check's outcome
        return Check("physical", FAIL, f"cannot ask the server for its data directory: {exc}{note}")
    if not (ep.socket or ep.host in LOOPBACK):
        return Check("physical", FAIL, f"mariabackup reads the server's files, and {ep.describe()} is not on this "
                     f"machine{note}", "run tenangdb on the database server, or use a logical engine")
    if not folder.is_dir() and os.access(folder.parent, os.X_OK):
        return Check("physical", FAIL, f"the server's data directory {folder} is not on this machine{note}",
                     "run tenangdb on the database server, or use a logical engine")
    problem = datadir_problem(folder, "this user")
    if problem is None and unit_dir is not None:
        problem = _unit_datadir_problem(Path(unit_dir) / "tenangdb.service", folder)
    if problem is not None:
        return Check("physical", FAIL, problem[0] + note, problem[1])
    return Check("physical", PASS, f"the data directory {folder} is readable by this user{note}")


def datadir_problem(datadir: Path, who: str, account: tuple[int, set[int]] | None = None) -> tuple[str, str] | None:
    """Why `who` cannot read what mariabackup copies of the server's data directory, and the fix;
    None when it can. With `account` (a uid and its group ids), judged by the mode bits, for an
    account other than this process's (init's service user, the installed unit's)."""
    from tenangdb.mysql.datadir import to_read

    if account is None:
        blocked = next((p for p in to_read(datadir) if not os.access(p, os.R_OK | (os.X_OK if p.is_dir() else 0))),
                       None)
    else:
        blocked = next((p for p in datadir.parents if not _can(*account, p, 1)), None) or next(
            (p for p in to_read(datadir) if not _can(*account, p, 5 if p.is_dir() else 4)), None)
    if blocked is None:
        return None
    try:
        import grp
        group = grp.getgrgid(datadir.stat().st_gid).gr_name if datadir.stat().st_gid != 0 else None
    except (KeyError, OSError):
        group = None
    if blocked in datadir.parents:
        message = f"{who} cannot reach the server's data directory ({datadir}), which mariabackup copies: {blocked} " \
                  "is closed to it"
    else:
        where = "the server's data directory" if blocked == datadir else f"{blocked}, in the server's data directory"
        message = f"{who} cannot read {where} ({datadir}), which mariabackup copies"
    if group:
        fix = (f"give its group {group} read access (chmod -R g+rX {datadir}; and for the databases made later, "
               f"Environment=UMASK_DIR=0750 in the server's unit: systemctl edit mariadb) and run backups as a "
               f"member of {group} (tenangdb init --deploy-systemd --engine mariabackup gives the unit "
               f"SupplementaryGroups={group}), or as the server's own user")
    else:
        fix = (f"give the data directory a group the backup user is in, readable (chgrp -R mysql {datadir}; "
               "chmod -R g+rX; Environment=UMASK_DIR=0750 in the server's unit), or run backups as the server's "
               "own user")
    return message, fix


def _unit_datadir_problem(path: Path, datadir: Path) -> tuple[str, str] | None:
    """What keeps the installed backup unit from reading the data directory: its user and groups,
    or its sandboxing (ProtectHome= and PrivateTmp= hide those folders unless the unit binds it)."""
    import grp
    import pwd

    values = _unit_values(path)
    user = (values or {}).get("User", "")
    if values is None or user in ("", "root", "0"):
        return None  # no unit, or one the service-unit check fails already
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return None  # the service-unit check says so
    extra = set()
    for name in values.get("SupplementaryGroups", "").split():
        try:
            extra.add(grp.getgrnam(name).gr_gid)
        except KeyError:
            return (f"{path}: SupplementaryGroups={name}: no such group on this machine",
                    "rerun: tenangdb init --deploy-systemd --engine mariabackup --force")
    gids = {entry.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem} | extra
    problem = datadir_problem(datadir, f"the service user {user} ({path.name})", (entry.pw_uid, gids))
    if problem is not None:
        return problem
    from tenangdb.deploy.systemd import hidden_by

    if (hiding := hidden_by(str(datadir), values)) is not None:
        return (f"{path}: {hiding} hides the server's data directory {datadir} from the backups",
                "rerun: tenangdb init --deploy-systemd --engine mariabackup --force (it binds the data directory "
                "read-only into the unit)")
    return None


def encryption(loaded: LoadedConfig) -> Check:
    enc = loaded.settings.backup.encryption
    if not enc.enabled:
        return Check("encryption", WARN, "backups are not encrypted (backup.encryption.enabled is false)",
                     "tenangdb key generate, then set backup.encryption.enabled: true and key_file")
    from tenangdb.stream.crypto import PASSPHRASE, load_keyring, load_keys, round_trip
    try:
        keys = load_keys(enc)
    except TenangDBError as exc:
        return Check("encryption", FAIL, str(exc), "fix backup.encryption (tenangdb key generate writes a new "
                     "identity)")
    if not keys.identities:
        return Check("encryption", WARN, f"encrypting to {len(keys.recipients)} recipient(s), but no identity is "
                     "configured here, so this host cannot verify or restore its backups",
                     "keep the identity safe elsewhere, or set backup.encryption.key_file for verify runs")
    problem = round_trip(keys)
    if problem:
        return Check("encryption", FAIL, f"a test blob encrypted to the recipients cannot be decrypted with the "
                     f"identity ({problem}): backups could not be restored with it",
                     "make backup.encryption.recipients include the identity's public key "
                     "(the `# public key:` line of the key file)")
    retired = {e.recipient: e.retired for e in load_keyring(enc) if e.retired}
    stale = [r for r in keys.recipient_strings if r in retired]
    if stale:
        return Check("encryption", WARN, f"new backups are encrypted to a retired key ({stale[0]}, retired "
                     f"{retired[stale[0]]})", "replace it in backup.encryption.recipients with the current "
                     "key's public key (the first `# public key:` line of the key file)")
    if keys.mode == PASSPHRASE:
        return Check("encryption", WARN, "age with a passphrase (scrypt): anyone who learns it reads every "
                     "backup, and this host holds it; a test blob round-trips",
                     "prefer recipients: tenangdb key generate -o FILE, set backup.encryption.key_file: FILE and "
                     "keep the passphrase only to read the older backups")
    return Check("encryption", PASS, f"age, {len(keys.recipients)} recipient(s); a test blob round-trips "
                 "through the identity")


def passphrase(loaded: LoadedConfig) -> Check | None:
    """A passphrase in backup.encryption.key: weak by the rule of crypto.passphrase_weakness?"""
    enc = loaded.settings.backup.encryption
    from tenangdb.stream.crypto import configured_passphrase, passphrase_weakness
    if not enc.enabled or configured_passphrase(enc) is None:
        return None
    weak = passphrase_weakness(enc.key.get_secret_value().rstrip("\r\n"))
    if weak:
        return Check("passphrase", WARN, f"the encryption passphrase is weak ({weak}): a copy of a backup can be "
                     "attacked offline, without limit", "use a generated one (e.g. 6+ random words, or "
                     "openssl rand -base64 24), or better an age identity (tenangdb key generate)")
    return Check("passphrase", PASS, "the encryption passphrase is long and varied (docs/SECURITY.md: the rule)")


def backup_keys(loaded: LoadedConfig) -> Check | None:
    """Which key each local encrypted backup needs, and whether this host holds it."""
    from tenangdb.actions.catalog import local_entries, mark_keys
    from tenangdb.stream.crypto import load_identities
    try:
        identities = load_identities(loaded.settings.backup.encryption)
    except TenangDBError as exc:
        return Check("backup-keys", FAIL, f"cannot read the configured keys: {exc}")
    entries = [e for e in local_entries(Path(loaded.settings.backup.directory), None) if e.encrypted]
    if not entries:
        return None
    mark_keys(entries, identities)
    needed: dict[str, list] = {}
    for entry in entries:
        needed.setdefault(entry.needs_key or "?", []).append(entry)
    missing = {k: v for k, v in needed.items() if not v[0].key_available}
    summary = ", ".join(f"{k} ({len(v)})" for k, v in sorted(needed.items()))
    if missing:
        names = "; ".join(f"{k}: {len(v)} backup(s), newest {max(v, key=lambda e: e.time).rel}"
                          for k, v in sorted(missing.items()))
        return Check("backup-keys", WARN, f"backups whose key is not configured here, so they cannot be verified "
                     f"or restored here: {names}", "add the identity to backup.encryption.key_file (tenangdb key "
                     "rotate keeps old identities in it), or set the passphrase")
    return Check("backup-keys", PASS, f"every encrypted backup's key is configured here: {summary}")


def upload(loaded: LoadedConfig) -> list[Check]:
    from tenangdb.remote import probe as remote

    up = loaded.settings.upload
    if not up.enabled or not up.destination:
        return [Check("upload", WARN, "upload is off: the only copies are on this machine",
                      "set upload.enabled, upload.destination and upload.rclone_config_path")]
    config = up.config_path  # the file the uploads use
    checks = []
    # It holds the cloud credentials: root:<service group> 0640 at most.
    conf = secret_file("rclone-config", config, group_ok=True)
    if conf is not None:
        checks.append(conf)
    try:
        version = remote.probe(up.destination, config, up.rclone_path, timeout=min(up.timeout, 120))
    except TenangDBError as exc:
        checks.append(Check("upload", FAIL, str(exc), f"check the remote with: rclone --config {config} "
                            f"lsd {up.destination}"))
        return checks
    checks.append(Check("upload", PASS, f"{up.destination}: a probe was written, read back and deleted "
                        f"({version}, --config {config})"))
    return checks


def metrics(loaded: LoadedConfig) -> Check:
    m = loaded.settings.metrics
    if not m.enabled:
        return Check("metrics", PASS, "metrics are off")
    where = f"{m.listen}:{m.port}"
    if m.listen in LOOPBACK:
        return Check("metrics", PASS, f"the exporter listens on {where}, this machine only")
    if not m.basic_auth.enabled:
        return Check("metrics", FAIL, f"the exporter listens on {where} without authentication",
                     "set metrics.listen: 127.0.0.1, or metrics.basic_auth with the password as ${VAR}")
    if not (m.tls_cert and m.tls_key):
        return Check("metrics", WARN, f"the exporter on {where} asks for a password but sends it in clear",
                     "set metrics.tls_cert and metrics.tls_key")
    return Check("metrics", PASS, f"the exporter on {where} uses basic auth over TLS")


def _newest_backups(directory: Path) -> dict[str, Path]:
    """The newest committed backup folder of each database folder."""
    from tenangdb.repository import store
    from tenangdb.repository.naming import BackupRef
    newest: dict[str, Path] = {}
    for folder_path in store.iter_backups(directory):
        key = BackupRef.from_path(folder_path).db
        if key not in newest or folder_path.name > newest[key].name:
            newest[key] = folder_path
    return newest


def _latest_sizes(directory: Path) -> tuple[int, int]:
    """(stored bytes of the newest backup of every database, number of databases)."""
    newest = _newest_backups(directory)
    total = 0
    for folder_path in newest.values():
        total += sum(f.stat().st_size for f in folder_path.iterdir() if f.is_file())
    return total, len(newest)


def _human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def free_space(loaded: LoadedConfig) -> Check | None:
    directory = Path(loaded.settings.backup.directory)
    probe = directory
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    fs = os.statvfs(probe)
    free = fs.f_bavail * fs.f_frsize
    need, count = _latest_sizes(directory)
    if count == 0:
        return Check("free-space", PASS, f"{_human(free)} free at {probe}; no backup yet to compare with")
    seen = f"{_human(free)} free at {probe}; the latest backups of {count} database(s) take {_human(need)}"
    if free < need:
        return Check("free-space", FAIL, f"{seen}: the next run will not fit",
                     "free space, move backup.directory, or run tenangdb cleanup")
    if free < 2 * need:
        return Check("free-space", WARN, f"{seen}: less than two runs' worth left",
                     "free space or run tenangdb cleanup")
    return Check("free-space", PASS, seen)


def fidelity(loaded: LoadedConfig) -> Check:
    """Whether the newest backup of each database holds everything exactly (docs/fidelity.md)."""
    from tenangdb.repository import manifest as manifest_mod

    newest = _newest_backups(Path(loaded.settings.backup.directory))
    lossy = []
    for folder_path in newest.values():
        try:
            manifest = manifest_mod.load(folder_path)
        except TenangDBError:
            continue  # a damaged backup is verify's to report
        if manifest.losses:
            lossy.append(f"{manifest.database} ({folder_path.name}): "
                         + "; ".join(str(loss) for loss in manifest.losses))
    if not newest:
        return Check("fidelity", PASS, "no backup yet to look at")
    if lossy:
        return Check("fidelity", WARN, f"the newest backup of {len(lossy)} database(s) does not hold everything "
                     f"exactly: {' | '.join(lossy)}",
                     "see docs/fidelity.md for what each loss means and how to remove it from the schema or data")
    return Check("fidelity", PASS, f"the newest backups of {len(newest)} database(s) record no losses")


def repository(loaded: LoadedConfig) -> Check:
    """Is the backup directory the repository this host backs up to (not an empty mount point)?"""
    from tenangdb.actions.backup import state_directory
    from tenangdb.repository import identity

    root = Path(loaded.settings.backup.directory)
    try:
        st = identity.status(root, state_directory(loaded))
    except TenangDBError as exc:
        return Check("repository", FAIL, str(exc), "run as the account that runs backups")
    if st.problem:
        return Check("repository", FAIL, st.problem, "mount the backup disk (or correct backup.directory); "
                     "backups refuse to run until then")
    if st.found is None:
        return Check("repository", WARN, f"{root} is not a repository yet", "the first backup makes it: "
                     "tenangdb backup --yes")
    if st.known is None:
        return Check("repository", WARN, f"{root} is repository {st.found[:12]}, not yet recorded in {st.record}",
                     "the next backup records it")
    return Check("repository", PASS, f"{root} is repository {st.found[:12]}, as recorded in {st.record}")


def last_backup(loaded: LoadedConfig, max_age: float) -> Check:
    from tenangdb.actions.backup import tracking_file
    from tenangdb.repository import tracking

    known = tracking.load(tracking_file(loaded))
    wanted = [d for d in loaded.settings.backup.databases if d != "all"] or sorted(known)
    if not wanted:
        return Check("last-backup", WARN, "no successful backup yet", "run: tenangdb backup --yes")
    now = time.time()
    never = [d for d in wanted if d not in known]
    old = [(d, now - known[d].timestamp()) for d in wanted if d in known and now - known[d].timestamp() > max_age]
    limit = f"{max_age / 3600:g}h"
    if old:
        listed = ", ".join(f"{d} ({age / 3600:.0f}h ago)" for d, age in old)
        return Check("last-backup", FAIL, f"last successful backup older than {limit}: {listed}",
                     "see journalctl -u tenangdb.service; run: tenangdb backup --yes")
    if never:
        return Check("last-backup", WARN, f"never backed up successfully: {', '.join(never)}",
                     "run: tenangdb backup --yes")
    youngest = max(now - known[d].timestamp() for d in wanted)
    return Check("last-backup", PASS, f"every database backed up within {limit} (oldest {youngest / 3600:.1f}h ago)")


def leftovers(loaded: LoadedConfig) -> Check:
    from tenangdb import orphans

    found = orphans.find_for(loaded)
    if not found:
        return Check("leftovers", PASS, "nothing left behind by a dead run (plaintext, downloads, sandboxes, logins)")
    listed = "; ".join(leftover.describe() for leftover in found[:5])
    more = f" (and {len(found) - 5} more)" if len(found) > 5 else ""
    return Check("leftovers", WARN, f"{len(found)} left behind by killed runs: {listed}{more}",
                 "tenangdb cleanup removes them (so does the next run of any command)")


def run(loaded: LoadedConfig, *, max_age: float = 26 * 3600, unit_dir: str = "/etc/systemd/system") -> list[Check]:
    from tenangdb.config.schema import default_state_directory

    cfg = loaded.settings
    checks: list[Check | None] = [
        config_file(loaded),
        config_review(loaded),
        plaintext(loaded),
        secret_file("secrets-file", secrets_path(loaded)),
        secret_file("key-file", cfg.backup.encryption.key_file),
        secret_file("defaults-file", cfg.database.defaults_file, group_ok=True),
        folder("backup-dir", cfg.backup.directory, required=True),
        repository(loaded),
        folder("state-dir", cfg.backup.tracking_directory or default_state_directory(), required=False),
        folder("log-dir", os.path.dirname(cfg.logging.file_path) if cfg.logging.file_path else None,
               required=False),
        binary(),
        integrity(),
        service_unit(unit_dir, loaded),
        tools(loaded),
        *database(loaded),
        *binlog(loaded),
        physical(loaded, unit_dir),
        encryption(loaded),
        passphrase(loaded),
        backup_keys(loaded),
        *upload(loaded),
        metrics(loaded),
        free_space(loaded),
        last_backup(loaded, max_age),
        leftovers(loaded),
        fidelity(loaded),
    ]
    return [c for c in checks if c is not None]

"""`tenangdb init`: ask (or take from flags) how to reach the database and where backups go,
check what can be checked (connection, tools, grants, the upload destination), then write the
config (no secret in it), the secrets file (0600), the age identity, the folders and, with
--deploy-systemd, the service account and the hardened units.

Questions go through `Questions`, which the cli provides: on a terminal it prompts, without one
it answers with the flag's value or the default and never waits for input.
"""

from __future__ import annotations

import os
import re
import secrets as pysecrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Protocol

import yaml
from pydantic import ValidationError

from tenangdb.config.loader import secrets_file_text
from tenangdb.config.original import VERSION
from tenangdb.config.schema import (Settings, bounds_of, choices_of, default_backup_directory, default_log_file, default_of,
                                    default_rclone_config, default_state_directory)
from tenangdb.deploy import host, logrotate
from tenangdb.deploy.systemd import ENABLE, UnitParams, render_units
from tenangdb.errors import ConfigError, ConnectionFailed, TenangDBError
from tenangdb.mysql import datadir as datadir_mod
from tenangdb.mysql import engines
from tenangdb.mysql import grants as grants_mod
from tenangdb.mysql import inventory
from tenangdb.mysql.connection import connect, endpoint_from
from tenangdb.mysql.tools import tool_version
from tenangdb.remote import probe as remote

DB_PASSWORD_VAR = "TENANGDB_DB_PASSWORD"
METRICS_PASSWORD_VAR = "TENANGDB_METRICS_BASIC_AUTH_PASSWORD"
LOOPBACK = ("127.0.0.1", "::1", "localhost")


class Questions(Protocol):
    interactive: bool

    def ask(self, question: str, default: str | None = None, *, secret: bool = False) -> str: ...

    def confirm(self, question: str, default: bool) -> bool: ...

    def say(self, line: str = "") -> None: ...


@dataclass
class Answers:
    """What the flags said; None means "not given": asked on a terminal, else the default."""
    config: str
    root: Path = Path("/")
    force: bool = False
    dry_run: bool = False
    deploy_systemd: bool = False
    systemd_user: str = "tenangdb"
    host: str | None = None
    port: int | None = None
    socket: str | None = None
    user: str | None = None
    password: str | None = None
    databases: list[str] | None = None
    backup_dir: str | None = None
    compression: str | None = None
    encryption: str | None = None  # generate | recipients | none
    recipients: list[str] = field(default_factory=list)
    key_file: str | None = None
    upload: str | None = None  # "" means none
    rclone_config: str | None = None
    metrics: bool | None = None
    metrics_listen: str | None = None
    metrics_port: int | None = None
    metrics_user: str | None = None
    metrics_password: str | None = None
    secrets_file: str | None = None
    state_dir: str | None = None
    log_file: str | None = None  # "" for no log file
    binary: str | None = None
    binlog: bool | None = None  # archive the binary log (binlog.enabled) and run tenangdb-binlog.service
    engine: str | None = None  # backup.engine; None or auto: written as auto, grants of the one auto picks


@dataclass
class Layout:
    """Where things go, as the running system sees the paths."""
    config: str
    secrets: str
    key_file: str
    backup_dir: str
    state_dir: str
    log_file: str | None


def _is_root() -> bool:
    return os.geteuid() == 0


def default_layout(answers: Answers) -> Layout:
    config = os.path.abspath(answers.config)
    conf_dir = os.path.dirname(config)
    backup, state, log = default_backup_directory(), default_state_directory(), default_log_file()
    return Layout(
        config=config,
        secrets=os.path.abspath(answers.secrets_file) if answers.secrets_file else os.path.join(conf_dir, "secrets.env"),
        key_file=os.path.abspath(answers.key_file) if answers.key_file else os.path.join(conf_dir, "age-identity.txt"),
        backup_dir=backup, state_dir=os.path.abspath(answers.state_dir) if answers.state_dir else state,
        log_file=(os.path.abspath(answers.log_file) if answers.log_file else None) if answers.log_file is not None
        else log,
    )


def _ask_valid(q: Questions, question: str, default: str, convert: Callable[[str], object]):
    """Ask until `convert` accepts the answer (it raises ValueError or ConfigError otherwise)."""
    while True:
        answer = q.ask(question, default)
        try:
            return convert(answer)
        except (ValueError, ConfigError) as exc:
            if not q.interactive:
                raise ConfigError(f"{question}: {exc}") from None
            q.say(f"  {exc}")


PORTS = bounds_of("database.port")


def _port(text: str) -> int:
    low, high = PORTS
    if not text.strip().isdigit() or not low <= int(text) <= high:
        raise ValueError(f"a port is a number from {low} to {high}")
    return int(text)


COMPRESSIONS = choices_of("backup.compression.format")


def _compression(text: str) -> str:
    if text not in COMPRESSIONS:
        raise ValueError(f"choose {', '.join(COMPRESSIONS[:-1])} or {COMPRESSIONS[-1]}")
    return text


def _recipients(text: str) -> list[str]:
    from tenangdb.stream.crypto import parse_recipient
    found = _split(text)
    for item in found:
        parse_recipient(item, "recipient")
    return found


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.replace(" ", ",").split(",") if part.strip()]


def _choose_databases(q: Questions, given: list[str] | None, found: list[str]) -> list[str]:
    if given is not None:
        chosen = given
    else:
        q.say("Databases this account can see: " + (", ".join(f"{i}) {name}" for i, name in enumerate(found, 1))
                                                    or "(none)"))
        while True:
            text = q.ask("Databases to back up (names or numbers, comma-separated, or 'all')", "all")
            picked = [found[int(part) - 1] if part.isdigit() and 1 <= int(part) <= len(found) else part
                      for part in _split(text)]
            if picked and not ("all" in picked and len(picked) > 1):
                chosen = picked
                break
            q.say("  give at least one database, or 'all' alone")
    chosen = list(dict.fromkeys(chosen))
    if "all" in chosen and len(chosen) > 1:
        raise ConfigError("--databases: `all` cannot be combined with database names")
    unseen = [name for name in chosen if name != "all" and name not in found]
    if unseen:
        # The account may simply have no privilege on them yet: the grants below say what to run.
        q.say(f"warning: this account cannot see {', '.join(unseen)} (missing, or no privilege on it yet)")
    return chosen


def _connect(q: Questions, a: Answers) -> tuple[dict, object]:
    """Ask for the connection and open it; (database section, connection)."""
    socket = a.socket
    hostname = a.host
    if hostname is None and socket is None and q.interactive:
        where = q.ask("Database host, or the path of a unix socket", default_of("database.host"))
        if where.startswith("/"):
            socket = where
        else:
            hostname = where
    section: dict = {}
    if socket:
        section["socket"] = socket
        section["host"] = "localhost"
    else:
        section["host"] = hostname or default_of("database.host")
        port = a.port
        if port is None and q.interactive and section["host"] != "localhost":
            port = _ask_valid(q, "Database port", str(default_of("database.port")), _port)
        section["port"] = port or default_of("database.port")
    if section["host"] not in LOOPBACK and not socket:
        # Off this machine the connection must be encrypted (docs/SECURITY.md).
        section["ssl_mode"] = "REQUIRED"
    user, password = a.user, a.password
    for attempt in range(1, 4):
        if user is None or attempt > 1 and a.user is None:
            user = q.ask("Database user for backups", user or "tenangdb_backup")
        if q.interactive and (password is None or attempt > 1):
            password = q.ask("Password (not shown; empty for socket authentication)", "", secret=True)
        section["username"] = user
        settings_db = Settings.model_validate({"database": {**section, "password": password or None}}).database
        try:
            conn = connect(endpoint_from(settings_db))
            return {**section, "_password": password or None}, conn
        except ConnectionFailed as exc:
            if not q.interactive or attempt == 3:
                raise
            q.say(f"error: {exc}; try again")
    raise AssertionError("unreachable")


def _report_tools(q: Questions) -> None:
    import shutil
    for label, names in (("dump tool", ("mariadb-dump", "mysqldump")), ("client", ("mariadb", "mysql")),
                         ("mydumper", ("mydumper",)), ("mariabackup", ("mariabackup", "mariadb-backup")),
                         ("rclone", ("rclone",)),
                         ("systemd-analyze", ("systemd-analyze",))):
        path = next((p for p in (shutil.which(n) for n in names) if p), None)
        if path and label in ("dump tool", "client", "mydumper", "mariabackup"):
            q.say(f"  {label}: {path} ({tool_version(path)})")
        elif path:
            q.say(f"  {label}: {path}")
        else:
            q.say(f"  {label}: not installed" + (" (needed for backups)" if label == "dump tool" else ""))


def grant_advice(conn, server, databases: list[str], engine: str = engines.DEFAULT, *,
                 archiver: bool = False) -> tuple[grants_mod.GrantReport, list[str]]:
    user, hostpart, lines = grants_mod.current_grants(conn)
    parsed, roles = grants_mod.parse_grants(lines)
    needs = grants_mod.requirements(engine, server.flavour, server.version, binlog=server.log_bin)
    # MariaDB's SHOW GRANTS already lists the privileges of the role active at login (the
    # default role); MySQL's does not expand roles, so say they were not examined there.
    report = grants_mod.check(parsed, roles if server.flavour == "mysql" else [], needs, databases,
                              user=user, host=hostpart, allowed=grants_mod.ARCHIVER if archiver else frozenset())
    statements = grants_mod.least_privilege_statements(needs, databases, user, hostpart)
    return report, statements


def _choose_binlog(q: Questions, wanted: bool | None, log_bin: bool) -> bool:
    """--binlog/--no-binlog, else asked on a terminal when the server's binary log is on."""
    if wanted is None:
        wanted = bool(q.interactive and log_bin and q.confirm(
            "Archive the binary log for point-in-time recovery (tenangdb binlog)?", False))
    if wanted:
        q.say("note: the archiver's account also needs REPLICATION SLAVE, BINLOG MONITOR and RELOAD on *.* to "
              "read, list and close the binary log files (tenangdb doctor checks them)")
    if wanted and not log_bin:
        q.say("warning: the server's binary log is off: the archiver refuses until log_bin=ON and "
              "binlog_format=ROW are set in the server's configuration (tenangdb doctor checks it)")
    return wanted


def _say_whole_instance(q: Questions, section: dict, databases: list[str]) -> None:
    if databases != ["all"]:
        q.say(f"note: a physical backup is of the whole instance: backup.databases ({', '.join(databases)}) does "
              "not narrow it")
    if not section.get("socket") and section.get("host") not in LOOPBACK:
        q.say("warning: mariabackup reads the server's files, and the server is not on this machine: run tenangdb on "
              "the database server, or choose a logical engine")


def _group_of(folder: Path | None) -> str | None:
    """The group of the data directory, for the backup unit to read it through; not root's."""
    import grp
    try:
        gid = folder.stat().st_gid if folder is not None else 0
        return grp.getgrgid(gid).gr_name if gid != 0 else None
    except (OSError, KeyError):
        return None


def _say_datadir(q: Questions, a: Answers, datadir: Path) -> None:
    """What doctor says of the data directory (actions/doctor.datadir_problem), for the account
    the backups will run as: the service user with the unit's groups, or this one."""
    from tenangdb.actions.doctor import datadir_problem

    q.say(f"note: mariabackup reads the server's data directory {datadir}: the account that runs backups must be "
          "able to read it (tenangdb doctor checks it)")
    if a.deploy_systemd:
        account = host.find_account(a.systemd_user, a.root)
        uid, gids = (account.uid, {account.gid}) if account else (-1, set())
        if account and str(a.root) == "/":
            gids |= set(os.getgrouplist(a.systemd_user, account.gid))
        group = _group_of(datadir)
        if group is not None:
            gids.add(datadir.stat().st_gid)
            q.say(f"  tenangdb.service reads it read-only, as a member of its group {group} "
                  f"(SupplementaryGroups={group})")
        problem = datadir_problem(datadir, f"the service user {a.systemd_user}", (uid, gids))
    else:
        problem = datadir_problem(datadir, "this user")
    if problem is not None:
        q.say(f"warning: {problem[0]}")
        q.say(f"  fix: {problem[1]}")


def _say_grants(q: Questions, report: grants_mod.GrantReport, statements: list[str]) -> None:
    account = f"'{report.user}'@'{report.host}'"
    if report.missing_required:
        q.say(f"warning: {account} lacks what backups need:")
        for need, where in report.missing_required:
            q.say(f"  - {need.privilege} on {where}: {need.why}")
    for need, where in report.missing_optional:
        q.say(f"note: without {need.privilege} on {where} backups work but do not {need.why}")
    if report.excess:
        q.say(f"warning: {account} holds more than a backup needs:")
        for item in report.excess:
            q.say(f"  - {item}")
    if report.roles:
        q.say(f"note: privileges through roles ({', '.join(report.roles)}) were not examined")
    if report.missing or report.excess:
        q.say("Least-privilege grants for this account (run as an administrator; revoke the rest):")
        for statement in statements:
            q.say(f"  {statement}")
    else:
        q.say(f"  grants of {account}: exactly what backups need")


def run(a: Answers, q: Questions) -> dict:
    """Returns what was done: {"files": [...], "units": {...}, "config": text}."""
    root = a.root
    layout = default_layout(a)
    if a.deploy_systemd and not _is_root() and not a.dry_run:
        raise TenangDBError("--deploy-systemd creates a system user and writes to /etc/systemd/system: "
                            "run it as root (sudo tenangdb init --deploy-systemd ...), or add --dry-run")
    # Refuse early, before a single question, when something would be overwritten.
    targets = [layout.config, layout.secrets]
    if a.deploy_systemd:
        every_unit = render_units(UnitParams(binary="/", config="/", exporter=True, drill=True, binlog=True))
        targets += [f"/etc/systemd/system/{name}" for name in every_unit]
    if not a.force and not a.dry_run:
        for path in targets:
            if host.under(root, path).exists():
                raise TenangDBError(f"{host.under(root, path)} already exists; refusing to overwrite it "
                                    "(use --force)")

    for text in a.recipients:  # a typo in a flag should not cost a connection attempt
        _recipients(text)
    if a.encryption == "recipients" and not a.recipients:
        raise ConfigError("--encryption recipients needs at least one --recipient age1...")

    q.say("Tools:")
    _report_tools(q)
    section, conn = _connect(q, a)
    password = section.pop("_password")
    try:
        server = inventory.server_info(conn)
        found = inventory.all_databases(conn, include_mysql=False)
        q.say(f"Connected: {server.flavour} {server.version}, binary log {'on' if server.log_bin else 'off'}")
        databases = _choose_databases(q, a.databases, found)
        # The grants of the engine backup.engine names; for auto (what init writes unless
        # --engine says otherwise), of the one it picks here.
        engine = a.engine if a.engine not in (None, "auto") else engines.choose(Settings()).name
        binlog = _choose_binlog(q, a.binlog, server.log_bin)
        report, statements = grant_advice(conn, server, databases, engine, archiver=binlog)
        # An engine that copies the server's files reads its data directory (mysql/datadir.py).
        reads = datadir_mod.locate(conn).path if engines.ENGINES[engine].whole_instance else None
    finally:
        conn.close()
    _say_grants(q, report, statements)
    if reads is not None:
        _say_whole_instance(q, section, databases)

    backup_dir = a.backup_dir or (q.ask("Backup directory", layout.backup_dir) if q.interactive
                                  else layout.backup_dir)
    backup_dir = os.path.abspath(backup_dir)
    compression = a.compression or (_ask_valid(q, f"Compression ({', '.join(COMPRESSIONS)})",
                                               default_of("backup.compression.format"), _compression)
                                    if q.interactive else default_of("backup.compression.format"))

    # Encryption: a new identity here, recipients whose identity is kept elsewhere, or none.
    encryption = a.encryption or ("recipients" if a.recipients else None)
    recipients = list(a.recipients)
    if encryption is None:
        if q.interactive:
            if q.confirm("Encrypt backups with age?", True):
                recipients = _ask_valid(q, "age recipients to encrypt to (age1..., comma-separated; empty: "
                                        "generate a new identity here)", "", _recipients)
                encryption = "recipients" if recipients else "generate"
            else:
                encryption = "none"
        else:
            encryption = "generate"
    if encryption == "recipients" and not recipients:
        raise ConfigError("--encryption recipients needs at least one --recipient age1...")
    for text in recipients:
        _recipients(text)
    # An existing identity is kept, even with --force: replacing it would orphan every backup
    # made with it.
    existing_key = encryption == "generate" and host.under(root, layout.key_file).exists()
    if existing_key:
        from tenangdb.stream.crypto import parse_identities, read_key_file
        key_text = read_key_file(str(host.under(root, layout.key_file)), "--key-file")
        public = [str(i.to_public()) for i in parse_identities(key_text, str(layout.key_file))]
        q.say(f"Keeping the existing age identity {layout.key_file} (public key {public[0]})")

    # Upload: tested now, so a typo shows up today and not after the first night.
    destination = a.upload
    if destination is None and q.interactive and remote.find_rclone():
        destination = q.ask("Upload destination (rclone remote:path; empty for none)", "")
    rclone_config = None
    if destination:
        default_conf = a.rclone_config or (os.path.join(os.path.dirname(layout.config), "rclone.conf")
                                           if _is_root() else default_rclone_config())
        rclone_config = a.rclone_config or (q.ask("rclone config file", default_conf) if q.interactive
                                            else default_conf)
        rclone_config = os.path.abspath(rclone_config)
        while True:
            try:
                version = remote.probe(destination, str(host.under(root, rclone_config)))
                q.say(f"Upload destination {destination}: written, read back and deleted a probe ({version})")
                break
            except remote.RemoteUnusable as exc:
                if not q.interactive or a.upload is not None:
                    raise
                q.say(f"error: {exc}")
                destination = q.ask("Upload destination (rclone remote:path; empty for none)", "")
                if not destination:
                    rclone_config = None
                    break

    metrics = a.metrics
    if metrics is None:
        metrics = q.confirm("Enable Prometheus metrics?", False) if q.interactive else False
    metrics_section: dict = {"enabled": bool(metrics)}
    metrics_password = None
    if metrics:
        listen = a.metrics_listen or (q.ask("Metrics listen address", default_of("metrics.listen")) if q.interactive
                                      else default_of("metrics.listen"))
        port = a.metrics_port or (_ask_valid(q, "Metrics port", str(default_of("metrics.port")), _port)
                                  if q.interactive else default_of("metrics.port"))
        metrics_section.update(listen=listen, port=port,
                               storage_path=os.path.join(layout.state_dir, "metrics.json"))
        if listen not in LOOPBACK or a.metrics_user:
            user = a.metrics_user or "prometheus"
            metrics_password = a.metrics_password or pysecrets.token_urlsafe(24)
            metrics_section["basic_auth"] = {"username": user, "password": f"${{{METRICS_PASSWORD_VAR}}}"}

    # The config: only chosen values, secrets as ${VAR}; validated by the schema before writing.
    db_section = dict(section)
    secret_values: dict[str, str] = {}
    if password:
        db_section["password"] = f"${{{DB_PASSWORD_VAR}}}"
        secret_values[DB_PASSWORD_VAR] = password
    if metrics_password:
        secret_values[METRICS_PASSWORD_VAR] = metrics_password
    enc_section: dict = {"enabled": encryption != "none"}
    if encryption == "generate":
        enc_section["key_file"] = layout.key_file
    elif encryption == "recipients":
        enc_section["recipients"] = recipients
    # Marks the file as this TenangDB's, never reviewed as the original's (config/original.py).
    data: dict = {"config_version": VERSION}
    if secret_values:
        data["secrets_file"] = layout.secrets
    data["database"] = db_section
    data["backup"] = {
        **({"engine": a.engine} if a.engine not in (None, "auto") else {}),
        "directory": backup_dir, "databases": databases,
        "tracking_directory": layout.state_dir,
        "compression": {"format": compression},
        "encryption": enc_section,
    }
    if destination:
        data["upload"] = {"enabled": True, "destination": destination, "rclone_config_path": rclone_config}
    data["logging"] = {"level": default_of("logging.level")}
    if layout.log_file:
        data["logging"]["file_path"] = layout.log_file
    data["metrics"] = metrics_section
    if binlog:
        data["binlog"] = {"enabled": True}
    _validate(data, secret_values, layout)

    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    header = (f"# TenangDB configuration, written by `tenangdb init` on {stamp}.\n"
              "# No secret is kept here: ${NAME} values come from the environment or from secrets_file\n"
              "# (mode 0600). Check this installation with: tenangdb doctor\n")
    config_text = header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)
    secrets_text = secrets_file_text(secret_values, "TenangDB secrets, referenced from the config as ${NAME}.\n"
                                     "Keep this file 0600 and owned by root.") if secret_values else None

    if (not a.deploy_systemd and q.interactive and _is_root() and str(root) == "/" and host.systemd_running()
            and q.confirm(f"Install systemd units running as {a.systemd_user} (--deploy-systemd)?", False)):
        a.deploy_systemd = True
        every_unit = render_units(UnitParams(binary="/", config="/", exporter=True, drill=True, binlog=True))
        existing = [name for name in every_unit if Path("/etc/systemd/system", name).exists()]
        if existing and not a.force:
            raise TenangDBError(f"/etc/systemd/system/{existing[0]} already exists; refusing to overwrite it "
                                "(use --force)")
    units: dict[str, str] = {}
    unit_params = None
    if a.deploy_systemd:
        unit_params = UnitParams(
            binary=a.binary or _binary(), config=layout.config, user=a.systemd_user, group=a.systemd_user,
            secrets_file=layout.secrets if secret_values else None,
            key_file=layout.key_file if encryption == "generate" else None,
            writable=[backup_dir, layout.state_dir],
            optional_writable=[os.path.dirname(layout.log_file)] if layout.log_file else [],
            exporter=bool(metrics), drill=bool(destination), binlog=binlog,
            datadir=str(reads) if reads is not None else None, datadir_group=_group_of(reads))
        units = render_units(unit_params)
    if reads is not None:
        _say_datadir(q, a, reads)
    rotation = (logrotate.render(layout.log_file, a.systemd_user, a.systemd_user)
                if a.deploy_systemd and layout.log_file else None)

    # The repository's identity belongs to this host's backup disk: never into a package tree
    # (--root), where every host installed from it would share one id.
    real_host = str(root) == "/"
    if real_host:
        from tenangdb.repository import identity

        st = identity.status(Path(backup_dir), Path(layout.state_dir))
        if st.problem:
            raise identity.RepositoryUnavailable(f"refusing to set up the backup directory: {st.problem}")

    if a.dry_run:
        return {"config": config_text, "secrets": sorted(secret_values), "units": units, "files": [],
                "layout": layout, "logrotate": rotation}

    # Owners: the service account owns the folders it writes; root keeps the config and secrets.
    created_user = False
    svc_uid, svc_gid = -1, -1
    if a.deploy_systemd:
        account, created_user = host.ensure_account(a.systemd_user, layout.state_dir, root)
        svc_uid, svc_gid = account.uid, account.gid
        q.say(f"{'Created' if created_user else 'Using'} the system user {a.systemd_user} "
              f"(uid {account.uid}, gid {account.gid})")
    elif _is_root():
        gid = host.find_group(a.systemd_user, root)
        account = host.find_account(a.systemd_user, root)
        svc_gid = gid if gid is not None else -1
        svc_uid = account.uid if account else -1
    files: list[str] = []
    conf_dir = host.under(root, os.path.dirname(layout.config))
    owner_uid = 0 if _is_root() else -1
    if not conf_dir.exists() or a.deploy_systemd:
        if not host.make_dir(conf_dir, 0o750, owner_uid, svc_gid if svc_gid >= 0 else -1,
                             real=os.path.dirname(layout.config)):
            q.say(f"note: left the existing folder {os.path.dirname(layout.config)} as it is")
    for folder in (backup_dir, layout.state_dir) + ((os.path.dirname(layout.log_file),) if layout.log_file else ()):
        if host.make_dir(host.under(root, folder), 0o750, svc_uid, svc_gid, real=folder):
            files.append(folder + "/")
        else:
            q.say(f"note: left the existing folder {folder} as it is (not empty, not a tenangdb folder); "
                  "tenangdb doctor checks its mode")
    if real_host:
        st = identity.check(Path(backup_dir), Path(layout.state_dir), create=True)
        for made in (Path(backup_dir) / identity.MARKER, st.record):
            if svc_uid >= 0 or svc_gid >= 0:
                os.chown(made, svc_uid, svc_gid)  # the service reads both, and may record again
        files.append(str(Path(backup_dir) / identity.MARKER))
    if encryption == "generate" and not existing_key:
        from tenangdb.stream.crypto import generate_identity_file
        key_path = host.under(root, layout.key_file)
        recipient = generate_identity_file(key_path)
        os.chmod(key_path, 0o600)
        if owner_uid == 0:
            os.chown(key_path, 0, 0)
        q.say(f"New age identity {layout.key_file} (0600); its public key: {recipient}")
        q.say("  keep a copy of the identity off this machine: without it no backup can be restored")
        files.append(layout.key_file)
    if secrets_text is not None:
        host.write_file(host.under(root, layout.secrets), secrets_text.encode(), 0o600,
                        owner_uid, 0 if owner_uid == 0 else -1, force=a.force)
        files.append(layout.secrets)
    host.write_file(host.under(root, layout.config), config_text.encode(), 0o640, owner_uid,
                    svc_gid if svc_gid >= 0 else (0 if owner_uid == 0 else -1), force=a.force)
    files.append(layout.config)

    unit_paths: list[Path] = []
    if units:
        unit_dir = host.under(root, "/etc/systemd/system")
        for name, text in units.items():
            path = unit_dir / name
            host.write_file(path, text.encode(), 0o644, 0, 0, force=a.force)
            unit_paths.append(path)
            files.append(f"/etc/systemd/system/{name}")
        problems = host.verify_units(unit_paths)
        if host.systemd_analyze() is None:
            q.say("note: systemd-analyze is not installed; the units were not verified")
        elif problems:
            q.say("warning: systemd-analyze verify reported:")
            for line in problems:
                q.say(f"  {line}")
        else:
            q.say("systemd-analyze verify: the units are clean")
        if rotation is not None:
            _install_logrotate(q, root, rotation, files, force=a.force)
        if str(root) == "/" and host.systemd_running():
            host.systemctl("daemon-reload")
            enable = (list(ENABLE) + (["tenangdb-exporter.service"] if metrics else [])
                      + (["tenangdb-binlog.service"] if binlog else []))
            status, err = host.systemctl("enable", "--now", *enable)
            if status != 0:
                raise host.DeployError(f"systemctl enable {' '.join(enable)} failed: {err.splitlines()[-1] if err else status}")
            q.say(f"Enabled and started: {', '.join(enable)}; tenangdb-cleanup.timer is written but not enabled "
                  "(enable it once backup.retention is what you want)")
        else:
            q.say("systemd is not running here: enable the units with "
                  "`systemctl daemon-reload && systemctl enable --now tenangdb.timer tenangdb-verify.timer`")
    return {"config": config_text, "secrets": sorted(secret_values), "units": units, "files": files,
            "layout": layout, "unit_paths": [str(p) for p in unit_paths], "created_user": created_user}


def _install_logrotate(q: Questions, root: Path, policy: str, files: list[str], *, force: bool) -> None:
    """The log file's rotation policy. One already there (the security guide's own block, or the
    original's) is kept unless --force: it rotates the same file, and may be the operator's."""
    path = host.under(root, logrotate.POLICY_PATH)
    if (path.exists() or path.is_symlink()) and not force:
        q.say(f"note: left the existing {logrotate.POLICY_PATH} as it is (--force replaces it)")
        return
    host.write_file(path, policy.encode(), 0o644, 0, 0, force=force)
    files.append(logrotate.POLICY_PATH)


def _validate(data: dict, secret_values: dict[str, str], layout: Layout) -> None:
    """The schema must accept what we are about to write (with the secrets filled in)."""
    import json
    text = json.dumps(data)
    for name, value in secret_values.items():
        text = text.replace(f"${{{name}}}", json.dumps(value)[1:-1])
    candidate = json.loads(text)
    candidate.pop("secrets_file", None)
    try:
        Settings.model_validate(candidate)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"the answers do not make a valid configuration: {where}: {first['msg']}") from None


def _binary() -> str:
    import shutil
    import sys
    beside = Path(sys.executable).parent / "tenangdb"
    if beside.exists():
        return str(beside)
    found = shutil.which("tenangdb")
    if found:
        return os.path.abspath(found)
    raise TenangDBError("cannot find the tenangdb executable to put in the units; pass --binary PATH")



# --- `tenangdb init --rotate-db-password` ---

PENDING_SUFFIX = ".rotating"
_REFERENCE = re.compile(r"^file .* via \$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


@dataclass
class PasswordRotation:
    account: str  # 'user'@'host' as the server names it
    secrets_file: str
    variable: str
    statement: str  # the kind of statement that set it (never its text)
    resumed: bool = False  # an interrupted rotation was finished instead


def _password_variable(loaded) -> tuple[str, Path]:
    """The ${NAME} of the secrets file that database.password reads, and that file. Only a
    password that lives there can be rotated: one in the environment or in the config itself
    would still be the old one at the next run."""
    from tenangdb.actions.doctor import secrets_path

    source = loaded.sources.get("database.password", "")
    found = _REFERENCE.match(source)
    where = secrets_path(loaded)
    if source.startswith("env "):
        raise ConfigError(f"database.password comes from the environment ({source[4:]}): change it where that is "
                          "set; --rotate-db-password rewrites only the secrets file")
    if not found or not where:
        raise ConfigError("database.password is not a ${NAME} read from the secrets file (secrets_file), so "
                          "--rotate-db-password has nowhere to keep the new one: run tenangdb init to move it there")
    name = found.group(1)
    if name in os.environ:
        raise ConfigError(f"${{{name}}} is set in the environment, which wins over the secrets file: unset it "
                          "first, or the new password would not be used")
    from tenangdb.config.loader import read_secrets_file
    if name not in read_secrets_file(where):
        raise ConfigError(f"${{{name}}} is not defined in the secrets file {where}")
    return name, Path(where)


def _with_value(text: str, name: str, value: str) -> str:
    """The secrets file's text with NAME's line(s) replaced and every other line kept."""
    line = secrets_file_text({name: value}).strip()
    out = []
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("export "):
            stripped = stripped[len("export "):].lstrip()
        out.append(line if stripped.partition("=")[0] == name and "=" in stripped else raw)
    return "\n".join(out) + "\n"


def _works(ep) -> bool:
    try:
        connect(ep).close()
        return True
    except ConnectionFailed:
        return False


def rotate_db_password(loaded, say: Callable[[str], None] = lambda line: None) -> PasswordRotation:
    """Give the configured database account a new generated password, safely.

    MariaDB keeps one password per account (MySQL's RETAIN CURRENT PASSWORD has no MariaDB
    counterpart), so the switch is made in an order where every failure leaves one working
    password written down: (1) the new secrets file is written beside the old one under a
    temporary name (0600, fsynced); (2) the password is changed on a session opened with the
    old one; (3) a new connection must log in with the new one, else the old password is set
    back on the still-open session and the temporary file removed; (4) only then the new file
    replaces the old by rename. A run killed between (2) and (4) leaves the temporary file,
    which the next --rotate-db-password finds and finishes with. The password never reaches
    argv, the environment or a log: it goes to the server as a statement parameter."""
    import dataclasses

    from tenangdb.fileio import write_atomically
    from tenangdb.secrets import redact

    name, secrets = _password_variable(loaded)
    pending = secrets.with_name(secrets.name + PENDING_SUFFIX)
    old_ep = endpoint_from(loaded.settings.database)
    if pending.exists():
        from tenangdb.config.loader import read_secrets_file
        waiting = read_secrets_file(pending).get(name)
        if waiting is not None and not _works(old_ep) and _works(dataclasses.replace(old_ep, password=waiting)):
            os.replace(pending, secrets)
            say(f"finished an interrupted rotation: {secrets} now holds the password the server has")
            return PasswordRotation(account=old_ep.user, secrets_file=str(secrets), variable=name,
                                    statement="(earlier run)", resumed=True)
        pending.unlink()
    conn = connect(old_ep)  # the old password must still work: it is the way back
    try:
        account = grants_mod.current_account(conn)
        new = pysecrets.token_urlsafe(32)  # 256 bits; letters, digits, - and _: safe in any option file
        redact.add(new)
        st = secrets.stat()
        write_atomically(pending, _with_value(secrets.read_text(encoding="utf-8"), name, new).encode(), 0o600)
        try:
            if os.geteuid() == 0:
                os.chown(pending, st.st_uid, st.st_gid)
            statement = grants_mod.set_own_password(conn, new)
        except BaseException:
            pending.unlink(missing_ok=True)
            raise
        if not _works(dataclasses.replace(old_ep, password=new)):
            grants_mod.set_own_password(conn, old_ep.password or "")
            pending.unlink(missing_ok=True)
            raise ConnectionFailed(f"the new password for {account} was set but a new connection could not log in "
                                   "with it; the old password was set back and the secrets file is unchanged")
        os.replace(pending, secrets)
        dir_fd = os.open(secrets.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        conn.close()
    say(f"new password for {account} set with {statement}, tested, and written to {secrets} (${{{name}}}); "
        "the old one no longer works")
    return PasswordRotation(account=account, secrets_file=str(secrets), variable=name, statement=statement)

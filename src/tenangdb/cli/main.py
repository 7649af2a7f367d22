"""The command line: parse, load configuration, call one action, map errors to exit codes."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
import traceback
from pathlib import Path

import click
import platformdirs

from tenangdb import __version__, logs
from tenangdb.fileio import human_size
from tenangdb.errors import (EXIT_BACKUP, EXIT_GENERAL, EXIT_INTERRUPTED, EXIT_UPLOAD, EXIT_VERIFY,
                             ConfigError, Interrupted, TenangDBError, request_interrupt)

log = logging.getLogger("tenangdb")


class State:
    def __init__(self, config: str | None, log_level: str | None, insecure: bool) -> None:
        self.config_path = config
        self.log_level = log_level
        self.insecure = insecure
        self._loaded = None
        self.reap = True  # remove what dead runs left behind (orphans.py) once the config is known
        self.reaped: list = []

    def load(self, *, check_recipients: bool = True, original_log_file: bool = False):
        """`original_log_file`: a run the original logged to its default file (backup, cleanup)."""
        if self._loaded is None:
            from tenangdb.config.loader import load_config
            from tenangdb.logs import setup

            self._loaded = load_config(self.config_path, insecure=self.insecure, check_recipients=check_recipients)
            lg = self._loaded.settings.logging
            # The original's runs logged to its default file; a switched deployment's logrotate
            # and log shippers still read it. Not opening it is a warning, as it was there.
            original_file = self._loaded.original_log_file if original_log_file else None
            try:
                setup(self.log_level or lg.level, lg.format, original_file or lg.file_path, lg.file_format)
            except OSError as exc:
                if not original_file:
                    raise
                setup(self.log_level or lg.level, lg.format, None, lg.file_format)
                log.warning("cannot write the log file %s (%s): logging to the console only", original_file,
                            exc.strerror or exc)
            for warning in self._loaded.warnings:
                log.warning("%s", warning)
            if self.reap:
                from tenangdb import orphans

                self.reaped = orphans.reap_for(self._loaded)
        return self._loaded


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


@contextlib.contextmanager
def _progress_board():
    """On a terminal, a live board with log lines printed above it; otherwise nothing."""
    if not sys.stderr.isatty():
        yield None
        return
    from tenangdb.cli.progress import Board

    global _BOARD
    with logs.console_stream(Board()) as board, board:
        _BOARD = board
        try:
            yield board
        finally:
            _BOARD = None


_BOARD = None  # the board on the screen, taken off it while the operator is asked something


@contextlib.contextmanager
def _task_display():
    """Where restores, verifications and downloads show their progress: the board on a terminal
    (the one up already, for a run of several), otherwise a log line per stage (and one now and
    then through a long stage)."""
    if _BOARD is not None:
        yield _BOARD
    elif sys.stderr.isatty():
        with _progress_board() as board:
            yield board
    else:
        from tenangdb.cli.stages import StageLog

        yield StageLog()


@contextlib.contextmanager
def _watched(name: str):
    """One restore as a task on the display, ended with the block, done or not."""
    from tenangdb.progress import Task

    with _task_display() as display:
        task, ok = Task(display, name), False
        try:
            yield task
            ok = True
        finally:
            task.done(ok)


def _confirm_factory(assume_yes: bool):
    def confirm(question: str) -> bool:
        if assume_yes:
            return True
        if not _interactive():
            return False
        with _BOARD.paused() if _BOARD is not None else contextlib.nullcontext():
            return click.confirm(question, default=False, err=True)
    return confirm


def _on_sigterm(signum, frame):  # noqa: ARG001
    request_interrupt()
    raise Interrupted("interrupted by SIGTERM; unfinished work was removed")


def _on_sigint(signum, frame):  # noqa: ARG001
    request_interrupt()
    raise KeyboardInterrupt


# The original's logrus levels are accepted too: warn, and the ones we have no level for.
LOG_LEVELS = {"debug": "debug", "info": "info", "warning": "warning", "error": "error",
              "warn": "warning", "trace": "debug", "fatal": "error", "panic": "error"}
LOG_LEVEL_TYPE = click.Choice(list(LOG_LEVELS), case_sensitive=False)
LOG_LEVEL_HELP = "debug|info|warning|error (warn, trace, fatal and panic are mapped); overrides logging.level."


def log_level_name(value: str | None) -> str | None:
    return LOG_LEVELS[value.lower()] if value else None


def _debug(ctx: click.Context) -> bool:
    state = ctx.find_object(State)
    level = (state.log_level if state is not None else None) or log_level_name(ctx.params.get("log_level"))
    return level == "debug" or os.environ.get("TENANGDB_DEBUG") == "1"


def _set_state(attr: str, convert=None):
    def callback(ctx: click.Context, param: click.Parameter, value):  # noqa: ARG001
        if value is None or value is False:
            return
        state = ctx.find_object(State)
        if state is not None:
            setattr(state, attr, convert(value) if convert else value)
    return callback


def accept_globals_after(command: click.Command) -> None:
    """The original took --config, --log-level and --insecure after the command as well
    (its systemd unit runs `backup --config … --yes`, its CronJob `backup --force --config …`):
    every subcommand accepts them, and there they win over the ones given before it."""
    taken = {opt for param in command.params for opt in getattr(param, "opts", [])}
    late = [
        click.Option(["--config", "late_config"], type=click.Path(dir_okay=False), expose_value=False,
                     callback=_set_state("config_path"), help="Configuration file (as before the command)."),
        click.Option(["--log-level", "late_log_level"], type=LOG_LEVEL_TYPE, metavar="LEVEL", expose_value=False,
                     callback=_set_state("log_level", log_level_name), help="Log level (as before the command)."),
        click.Option(["--insecure", "late_insecure"], is_flag=True, expose_value=False,
                     callback=_set_state("insecure"), help="As before the command."),
    ]
    command.params.extend(option for option in late if option.opts[0] not in taken)
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            accept_globals_after(sub)


class Group(click.Group):
    def invoke(self, ctx: click.Context):
        signal.signal(signal.SIGTERM, _on_sigterm)
        signal.signal(signal.SIGINT, _on_sigint)
        try:
            return super().invoke(ctx)
        except click.exceptions.Exit:
            raise
        except click.ClickException:
            raise
        except TenangDBError as exc:
            if _debug(ctx):
                traceback.print_exc()
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("error: interrupted; unfinished work was removed", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except OSError as exc:
            # A file or folder we were not prepared for (another user's, a file where a folder
            # should be, a full disk): its path and the system's reason say what to fix.
            if _debug(ctx):
                traceback.print_exc()
            from tenangdb.secrets import redact
            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(f"error: {redact(where + (exc.strerror or str(exc)))}", err=True)
            ctx.exit(EXIT_GENERAL)
        except Exception as exc:  # a bug: say so in one line unless asked for details
            if _debug(ctx):
                traceback.print_exc()
            else:
                from tenangdb.secrets import redact
                click.echo(f"error: internal error: {redact(f'{type(exc).__name__}: {exc}')} "
                           "(run with --log-level debug for details)", err=True)
            ctx.exit(EXIT_GENERAL)


@click.group(cls=Group, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config", type=click.Path(dir_okay=False), envvar="TENANGDB_CONFIG",
              help="Configuration file (default: ./config.yaml, ./tenangdb.yaml, the user config dir, "
              "/etc/tenangdb/config.yaml). Also accepted after the command.")
@click.option("--log-level", type=LOG_LEVEL_TYPE, metavar="LEVEL", default=None, help=LOG_LEVEL_HELP)
@click.option("--insecure", is_flag=True, help="Accept a config file that other users can read although it holds "
              "a plaintext secret.")
# The original's deprecated form `tenangdb [--dry-run] [--databases a,b]` (no command) is a backup.
@click.option("--dry-run", "legacy_dry_run", is_flag=True, hidden=True)
@click.option("--databases", "legacy_databases", hidden=True)
@click.version_option(__version__, "--version", prog_name="tenangdb")
@click.pass_context
def cli(ctx: click.Context, config: str | None, log_level: str | None, insecure: bool, legacy_dry_run: bool,
        legacy_databases: str | None) -> None:
    """TenangDB: verified, encrypted MySQL/MariaDB backups.

    \b
    Exit codes: 0 success, 1 general error, 2 configuration error,
    3 database connection error, 4 backup/restore failed (also partial),
    5 upload failed, 6 cleanup failed, 7 verification failed, 130 interrupted.
    """
    ctx.obj = State(config, log_level_name(log_level), insecure)
    if ctx.invoked_subcommand is not None:
        if legacy_dry_run or legacy_databases:
            raise click.UsageError("--dry-run and --databases belong after the command (e.g. tenangdb backup "
                                   "--dry-run)")
        return
    click.echo("warning: tenangdb without a command is deprecated and runs `tenangdb backup`; name the "
               "command (tenangdb --help lists them)", err=True)
    ctx.invoke(backup, databases=legacy_databases, dry_run=legacy_dry_run, yes=False, force=False)


def _age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d"


def _split(value: str | None, option: str = "--databases") -> list[str] | None:
    if not value:
        return None
    names = [part.strip() for part in value.split(",") if part.strip()]
    if not names:
        raise click.BadParameter(f"names no {option[2:-1]}", param_hint=option)
    return names


@cli.command()
@click.option("--databases", help="Comma-separated databases; replaces backup.databases.")
@click.option("--dry-run", is_flag=True, help="Print the plan and change nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--force", is_flag=True, help="Skip the confirmation and the backup.min_backup_interval check.")
@click.pass_obj
def backup(state: State, databases: str | None, dry_run: bool, yes: bool, force: bool) -> None:
    """Back up the configured databases."""
    from tenangdb.actions import backup as action

    loaded = state.load(original_log_file=True)
    if "backup.timeout" in loaded.unenforced:
        from tenangdb.config.sample import format_duration
        log.warning("backup.timeout: %s in %s, a config of the original TenangDB, is not enforced (the original "
                    "never enforced it); the %s default applies until `tenangdb config --migrate`",
                    loaded.unenforced["backup.timeout"], loaded.path, format_duration(loaded.settings.backup.timeout))
    plan = action.plan(loaded, _split(databases))
    enc = "age" if plan.encrypted else "off"
    b, up = loaded.settings.backup, loaded.settings.upload
    upload = f"upload: {up.destination}" if up.enabled else "upload: disabled (local backup only)"
    summary = (f"databases: {action.describe_databases(plan)}\ndirectory: {plan.directory}\n{upload}\n"
               f"engine: {plan.engine}, compression: {plan.compression} (level {plan.level}), encryption: {enc}\n"
               f"options: concurrency {b.concurrency}, batch size {b.batch_size}, retries {b.retry_count}, "
               f"timeout {_age(b.timeout)} per database")
    if dry_run:
        click.echo("dry run: nothing will be changed\n" + summary)
        return
    recent = [] if force else action.recent_backups(loaded, plan)
    if recent:
        listed = ", ".join(f"{name} ({_age(age)} ago)" for name, age in recent)
        interval = _age(loaded.settings.backup.min_backup_interval)
        if _interactive():
            click.echo(f"Backed up less than {interval} ago (backup.min_backup_interval): {listed}", err=True)
            if not click.confirm("Back up again anyway?", default=False, err=True):
                click.echo("backup cancelled (use --force to skip this check)", err=True)
                return
        else:
            # Nobody to ask: a timer or a script wants the backup; say so and go on.
            log.warning("backing up again although the last backup is younger than %s: %s", interval, listed)
    skip = yes or force or loaded.settings.backup.skip_confirmation
    if not skip and _interactive():
        click.echo(summary, err=True)
        if not click.confirm("Proceed with the backup?", default=False, err=True):
            click.echo("backup cancelled", err=True)
            return
    from tenangdb.actions import chain

    outcome = chain.run(loaded, plan, progress=_progress_board)
    if outcome.exit_code:
        raise SystemExit(outcome.exit_code)


def _weekend() -> bool:
    from tenangdb.actions.cleanup import is_weekend

    return is_weekend()


@cli.command()
@click.option("--backup-path", "-b", help="Backup folder (or its manifest).")
@click.option("--all", "all_", is_flag=True, help="Verify every backup under backup.directory.")
@click.option("--latest", is_flag=True, help="Verify the newest backup of each database (for a timer).")
@click.option("--sample", type=click.IntRange(1), metavar="N",
              help="Verify N backups picked at random among the older ones (spot checks).")
@click.option("--databases", help="Comma-separated databases for --latest, --all or --sample.")
@click.option("--test-restore", is_flag=True, help="Also restore each backup into a scratch target and check "
              "objects, exact row counts and content checksums (verify.target).")
@click.option("--target", type=click.Choice(["sandbox", "server"]), help="Scratch target of --test-restore; "
              "overrides verify.target.")
@click.option("--from-remote", is_flag=True, help="Verify copies on the remote (upload.destination): with "
              "--backup-path (remote:{db}/{YYYY-MM}/{name} or a backup name), --latest, --all or --sample N; each "
              "is downloaded to a private temporary folder, and the result recorded on the remote.")
@click.option("--binlog", "binlog_archive", is_flag=True, help="Verify the binlog archive instead of backups: every "
              "archived file's SHA-256 and decryption against its record, and the chain's continuity (numbers, "
              "rotations, GTIDs); exit 7 on damage. With --from-remote: the off-site mirror "
              "({upload.destination}/.binlog) against the local records.")
@click.pass_obj
def verify(state: State, backup_path: str | None, all_: bool, latest: bool, sample: int | None,
           databases: str | None, test_restore: bool, target: str | None, from_remote: bool,
           binlog_archive: bool) -> None:
    """Check checksums, decryption and completeness of backups; with --test-restore, restore and check them."""
    from tenangdb.actions import fetch
    from tenangdb.actions import verify as action

    chosen = [name for name, on in (("--backup-path", bool(backup_path)), ("--all", all_), ("--latest", latest),
                                    ("--sample", sample is not None), ("--binlog", binlog_archive)) if on]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of --backup-path, --all, --latest, --sample N or --binlog")
    if binlog_archive:
        if databases or test_restore or target:
            raise click.UsageError("--binlog takes no --databases, --test-restore or --target")
        _verify_binlog(state.load(), from_remote)
        return
    if databases and backup_path:
        raise click.UsageError("--databases goes with --all, --latest or --sample, not --backup-path")
    if target and not test_restore:
        raise click.UsageError("--target needs --test-restore")
    loaded = state.load()
    if from_remote or (backup_path and fetch.is_remote_spec(backup_path, loaded)):
        _verify_remote(loaded, backup_path, "all" if all_ else "latest" if latest else "sample", _split(databases),
                       sample or 0, test_restore, target)
        return
    if backup_path:
        paths = action.expand_backup_path(loaded, backup_path)
    else:
        mode = "all" if all_ else "latest" if latest else "sample"
        paths = action.select_backups(loaded, mode=mode, databases=_split(databases), sample=sample or 0)
    if not paths:
        click.echo(f"no backups to verify under {loaded.settings.backup.directory}", err=True)
        return

    def show(outcome) -> None:
        if outcome.ok:
            click.echo(_verified_line(outcome))
            for note in outcome.notes:
                log.warning("%s: %s", outcome.name, note)
        elif len(paths) > 1:
            click.echo(f"FAILED {outcome.reason}")

    # One backup's failure is this command's one error line, with the word a log watch greps for.
    with _task_display() as display:
        outcomes = action.verify_each(loaded, paths, test_restore=test_restore, target=target, on_outcome=show,
                                      log_failures=len(paths) > 1, progress=display)
    failures = [outcome for outcome in outcomes if not outcome.ok]
    if not failures:
        return
    if len(paths) == 1:
        click.echo(f"error: FAILED {failures[0].reason}", err=True)
    else:
        click.echo(f"error: {len(failures)} of {len(paths)} backups failed verification", err=True)
    raise SystemExit(EXIT_VERIFY)


def _verify_binlog(loaded, from_remote: bool) -> None:
    from tenangdb.actions import pitr

    if from_remote:
        _verify_binlog_remote(loaded)
        return
    found = pitr.verify_archive(loaded)
    for note in found.notes:
        click.echo(f"note: {note}", err=True)
    for gap in found.gaps:
        click.echo(f"warning: recorded gap: {gap}; point-in-time restore across it is impossible", err=True)
    for problem in found.damage:
        click.echo(f"FAILED {problem}")
    if found.damage:
        click.echo(f"error: the binlog archive is damaged ({len(found.damage)} problem"
                   f"{'s' if len(found.damage) != 1 else ''})", err=True)
        raise SystemExit(EXIT_VERIFY)
    if found.files:
        click.echo(f"binlog archive OK: {found.files} file{'s' if found.files != 1 else ''} ({found.first}.."
                   f"{found.last}), hashes and decryption checked, chain continuous"
                   + (f" but for {len(found.gaps)} recorded gap{'s' if len(found.gaps) != 1 else ''}" if found.gaps
                      else ""))


def _verify_binlog_remote(loaded) -> None:
    """verify --binlog --from-remote: the off-site mirror against the local records."""
    from tenangdb.actions import binlog_offsite
    from tenangdb.repository import binlogs as store

    cfg = loaded.settings
    if not cfg.upload.destination:
        raise ConfigError("verify --binlog --from-remote: upload.destination is not set")
    directory = store.archive_directory(cfg)
    checked, damage = binlog_offsite.verify_remote(cfg, directory, store.records(directory))
    for problem in damage:
        click.echo(f"FAILED {problem}")
    if damage:
        click.echo(f"error: the remote binlog mirror is damaged ({len(damage)} problem"
                   f"{'s' if len(damage) != 1 else ''})", err=True)
        raise SystemExit(EXIT_VERIFY)
    click.echo(f"remote binlog mirror OK: {checked} file{'s' if checked != 1 else ''} proven on "
               f"{binlog_offsite.remote_folder_of(cfg)}")


def _verify_remote(loaded, backup_path: str | None, mode: str, databases: list[str] | None, sample: int,
                   test_restore: bool, target: str | None) -> None:
    """verify --from-remote: each remote copy downloaded, checked, and its result recorded on
    the remote; exit 7 if any failed."""
    from tenangdb.actions import fetch, recover

    # One named copy needs no listing of the whole remote.
    place = recover.load_catalogue(loaded, remote=True, listed=not backup_path)
    if backup_path:
        location = fetch.remote_location(place.rc, backup_path)
        chosen = [(location[len(place.rc.destination):].strip("/"), location)]
    else:
        chosen = [(e.rel, e.key) for e in recover.remote_selection(place, mode=mode, databases=databases,
                                                                    sample=sample)]
        if not chosen:
            click.echo(f"no remote backups to verify on {loaded.settings.upload.destination}", err=True)
            return
    failures = []
    for rel, key in chosen:
        with _task_display() as display:
            outcome = recover.check_remote(loaded, place, rel, key, test_restore=test_restore, target=target,
                                           progress=display)
        if outcome.ok:
            click.echo(f"{_verified_line(outcome)} (downloaded from the remote)")
        else:
            failures.append(outcome)
            if len(chosen) > 1:
                click.echo(f"FAILED {outcome.reason}")
    if not failures:
        return
    if len(chosen) == 1:
        click.echo(f"error: FAILED {failures[0].reason}", err=True)
    else:
        click.echo(f"error: {len(failures)} of {len(chosen)} remote backups failed verification", err=True)
    raise SystemExit(EXIT_VERIFY)


@cli.command()
@click.option("--databases", help="Comma-separated databases; default: every database on the remote.")
@click.option("--target", type=click.Choice(["sandbox", "server"]), help="Where the test restore loads; overrides "
              "verify.target.")
@click.pass_obj
def drill(state: State, databases: str | None, target: str | None) -> None:
    """Rehearse the worst day: download the newest off-site backup of each database, verify and
    test-restore it, and record the whole recovery time (metrics and the remote)."""
    from tenangdb.actions import recover

    loaded = state.load()

    def show(result) -> None:
        outcome = result.outcome
        if outcome.ok:
            click.echo(f"OK     {result.database}: {outcome.name} recovered in {result.duration:.1f}s "
                       f"(download, verification, load and checks; {outcome.proof})")
        else:
            click.echo(f"FAILED {result.database}: {outcome.reason}")

    with _task_display() as display:
        results = recover.drill(loaded, databases=_split(databases), target=target, on_result=show,
                                progress=display)
    failed = [r for r in results if not r.outcome.ok]
    if failed:
        click.echo(f"error: {len(failed)} of {len(results)} drills failed: "
                   f"{', '.join(r.database for r in failed)}", err=True)
        raise SystemExit(EXIT_VERIFY)


def _verified_line(outcome) -> str:
    from tenangdb.repository.manifest import describe_loss

    # Losses were recorded when the backup was made; they do not fail a verification, but a
    # passing one must not read as "everything is in it".
    losses = (f", with {len(outcome.losses)} recorded loss{'' if len(outcome.losses) == 1 else 'es'}: "
              + "; ".join(describe_loss(loss) for loss in outcome.losses)) if outcome.losses else ""
    if not outcome.method.startswith("test-restore"):
        # A legacy backup has no checksums: say what was read instead.
        return f"OK {outcome.path}{losses}" + (f" ({outcome.proof})" if outcome.method == "legacy-read" else "")
    if outcome.tables_checked and outcome.restored_rows is None:  # a physical backup: no rows counted
        return (f"OK {outcome.path} ({outcome.method}: {outcome.proof}; prepared and started in "
                f"{outcome.restore_seconds:.1f}s, {outcome.tables_checked} tables passed CHECK TABLE, "
                f"{outcome.duration:.1f}s in all){losses}")
    line = (f"OK {outcome.path} ({outcome.method}: {outcome.proof}; restored {outcome.restored_rows} rows in "
            f"{outcome.restore_seconds:.1f}s, {outcome.tables_checked} tables matched their recorded counts and "
            f"checksums, {outcome.duration:.1f}s in all){losses}")
    if not outcome.content_proven and outcome.notes:
        line += f"\n  content NOT proven: {outcome.notes[0]}"
    return line


@cli.command()
@click.option("--backup-path", "-b", help="What to restore: a database name (with --latest or --before, or alone "
              "when it has one backup), a backup name, its folder, a latest/{db} link, or a folder above backups "
              "(on a terminal you choose one).")
@click.option("--latest", is_flag=True, help="With -b DATABASE: its newest backup that passed verification, else its "
              "newest complete one; one found damaged when read is skipped for the one before it.")
@click.option("--before", metavar="TIME", help="With -b DATABASE or --all: the newest good backup taken before TIME "
              "('YYYY-MM-DD HH:MM:SS', UTC unless a zone such as +02:00 is given).")
@click.option("--all", "all_", is_flag=True, help="Restore the newest good backup of every database (or of "
              "--databases), each into its own name (see --prefix, --suffix).")
@click.option("--databases", help="With --all: comma-separated databases to restore.")
@click.option("--prefix", default="", help="With --all: restore each database DB into PREFIX+DB.")
@click.option("--suffix", default="", help="With --all: restore each database DB into DB+SUFFIX.")
@click.option("--target-database", "--database", "-d", "target",
              help="Database to restore into (created if missing); default: the backup's own database.")
@click.option("--yes", "-y", is_flag=True, help="Restore into a non-empty database without asking.")
@click.option("--from-remote", is_flag=True, help="Restore from the remote (upload.destination): -b names a database, "
              "a backup name or remote:{db}/{YYYY-MM}/{name}; the backup is downloaded to a private temporary "
              "folder, verified, restored, and the download removed. With --to-time/--to-gtid/--to-position: the "
              "base among the remote backups and the binlog mirror ({destination}/.binlog) downloaded.")
@click.option("--allow-system-schema", is_flag=True, help="Allow mysql or sys as the target: the backup's tables "
              "replace the server's own (accounts, grants, time zones); for restoring a whole instance.")
@click.option("--tables", help="Comma-separated tables (or views, sequences) of a logical backup: only they are "
              "restored, with their triggers; the rest of the target is left as it is.")
@click.option("--to-time", metavar="TIME", help="Point-in-time: with -b DATABASE, its newest base backup before "
              "TIME (its own, or a physical backup holding it), then the archived binary log replayed up to the last "
              "transaction before TIME ('YYYY-MM-DD HH:MM:SS', UTC unless a zone such as +02:00 is given); with "
              "--datadir DIR, the whole instance from the newest physical base.")
@click.option("--to-gtid", metavar="D-S-N", help="Point-in-time: replay up to and including this GTID.")
@click.option("--to-position", metavar="FILE:POS", help="Point-in-time: replay up to (not including) the event at "
              "this binlog position.")
@click.option("--dry-run", is_flag=True, help="With --to-time/--to-gtid/--to-position: print the plan (base, binlog "
              "files, stop point, replay size) and change nothing.")
@click.option("--datadir", type=click.Path(file_okay=False), help="With -b and a physical backup (backup.engine: "
              "mariabackup): restore the whole instance into this new, empty data directory (no server is touched), "
              "then print the command that starts a server on it. -b names one backup (here, or with --from-remote "
              "on the remote, its chain downloaded with it), or _instance with --latest/--before. With "
              "--to-time/--to-gtid/--to-position (no -b): the newest physical base before the stop point (with "
              "--from-remote, among the remote ones), replayed to it in a server of our own first.")
@click.option("--start", is_flag=True, help="With --datadir: once restored, run a server of our own on it, with its "
              "own accounts, on a private socket (no TCP unless --port), print how to connect, and wait; Ctrl-C or "
              "SIGTERM shuts it down cleanly and leaves the data directory ready to use.")
@click.option("--port", type=click.IntRange(1, 65535), help="With --start: the server listens on 127.0.0.1 at this "
              "port too (never on another address).")
@click.option("--source-database", metavar="DB", help="With -b naming a physical backup (a remote copy with "
              "--from-remote): restore only database DB of it (into -d TARGET, default DB). The whole instance is "
              "restored into a private folder beside the backup (a remote copy's: in TMPDIR; disk for all of it), "
              "started, and DB copied into the target.")
@click.pass_obj
def restore(state: State, backup_path: str | None, latest: bool, before: str | None, all_: bool,
            databases: str | None, prefix: str, suffix: str, target: str | None, yes: bool, from_remote: bool,
            allow_system_schema: bool, tables: str | None, to_time: str | None, to_gtid: str | None,
            to_position: str | None, dry_run: bool, datadir: str | None, start: bool, port: int | None,
            source_database: str | None) -> None:
    """Verify a backup, then restore it (or some of its tables) into a database (by default its own)."""
    from tenangdb.actions import fetch, recover
    from tenangdb.actions import restore as action
    from tenangdb.mysql.mariabackup import INSTANCE

    to_point = bool(to_time or to_gtid or to_position or dry_run)
    if (start or port is not None) and datadir is None:
        raise click.UsageError("--start and --port go with --datadir: they serve the restored data directory")
    if port is not None and not start:
        raise click.UsageError("--port goes with --start")
    if start and dry_run:
        raise click.UsageError("--dry-run restores nothing: no --start with it")
    if datadir is not None:
        others = all_ or target or tables is not None or source_database
        if to_point:
            if others or latest or before or (backup_path and backup_path != INSTANCE):
                raise click.UsageError("--datadir with --to-time/--to-gtid/--to-position chooses the newest physical "
                                       "base itself: no -b, -d, --all, --tables, --latest, --before or "
                                       "--source-database")
            _restore_datadir_to_point(state, datadir, to_time, to_gtid, to_position, dry_run, from_remote,
                                      start, port)
            return
        if not backup_path or others:
            raise click.UsageError("--datadir goes with -b naming one physical backup (or _instance with --latest or "
                                   "--before), or with --to-time/--to-gtid/--to-position")
        _restore_datadir(state, backup_path, datadir, latest, before, from_remote, start, port)
        return
    if source_database is not None:
        if not backup_path or all_ or latest or before or tables is not None or to_point:
            raise click.UsageError("--source-database goes with -b naming one physical backup (here, or a remote "
                                   "copy with --from-remote) and -d; to a point in time: -b DATABASE "
                                   "--to-time/--to-gtid/--to-position")
        _restore_from_instance(state, backup_path, source_database, target, yes, allow_system_schema, from_remote)
        return
    if to_point:
        _restore_to_point(state, backup_path, target, yes, allow_system_schema, to_time, to_gtid, to_position,
                          dry_run, conflicts=all_ or latest or bool(before) or tables is not None,
                          from_remote=from_remote)
        return
    if bool(backup_path) == all_:
        raise click.UsageError("give -b/--backup-path (a database, a backup or a path) or --all")
    if backup_path == INSTANCE:
        raise click.UsageError(f"{INSTANCE} is the whole instance: restore it into a new data directory with --datadir "
                               "DIR, or one database of it with -b DATABASE or --source-database")
    if all_ and (target or latest):
        raise click.UsageError("--all restores the newest good backup of each database into its own name "
                               "(--prefix/--suffix change it); --target-database and --latest go with -b")
    if not all_ and (prefix or suffix or databases):
        raise click.UsageError("--prefix, --suffix and --databases go with --all")
    if all_ and tables is not None:
        raise click.UsageError("--tables goes with -b: one backup's tables into one target")
    only = None if tables is None else _split(tables or ",", "--tables")  # "" names no table: not all
    when = recover.parse_time(before) if before else None
    if target is not None:
        action.check_name(target, allow_system_schema=allow_system_schema)  # before the config, the server or a byte
    loaded = state.load()
    confirm = _confirm_factory(yes)
    if all_:
        place = recover.load_catalogue(loaded, remote=from_remote)
        chosen = recover.newest_set(place, _split(databases), when)
        if INSTANCE in chosen and not databases:
            del chosen[INSTANCE]  # the instance's backups are not a database's: --datadir restores them
            click.echo(f"skipped {INSTANCE}: physical backups restore with --datadir (or one database with "
                       "--source-database)", err=True)
        _restore_all(loaded, place, chosen, prefix, suffix, confirm, allow_system_schema)
        return
    assert backup_path is not None
    remote = from_remote or fetch.is_remote_spec(backup_path, loaded)
    if _names_a_database(backup_path, remote):
        place = recover.load_catalogue(loaded, remote=remote)
        # A physical backup whose instance holds the database is one of its backups too (not for
        # --tables, which needs a logical backup's sections).
        pool = place if only is not None else _with_instance_backups(place, backup_path)
        entries = recover.pick(pool, backup_path, latest=latest, before=when,
                               choose=_choose_entry if _interactive() else None)
        database = next((e.database for e in entries if e.database != INSTANCE), backup_path)
        _restore_entries(loaded, place, entries, target or database, confirm, allow_system_schema, only,
                         database=database)
        return
    if latest or when is not None:
        raise click.UsageError("--latest and --before choose among a database's backups: give -b a database name")
    if remote:
        with observe_restore(loaded, backup_path), _watched(_restore_task(backup_path, target)) as progress:
            # The connection and the target first: a download can take long.
            checked = None if target is None else action.check_target(
                loaded, target, confirm=confirm, allow_system_schema=allow_system_schema, source=backup_path,
                tables=only)
            with fetch.fetched(loaded, backup_path, progress=progress) as folder:
                action.run(loaded, folder, target or action.own_database(folder), confirm=confirm,
                           allow_system_schema=allow_system_schema, checked=checked, tables=only, progress=progress)
        return
    chosen = _choose_backup(loaded, backup_path)
    with observe_restore(loaded, chosen), _watched(_restore_task(str(chosen), target)) as progress:
        action.run(loaded, chosen, target or action.own_database(chosen), confirm=confirm,
                   allow_system_schema=allow_system_schema, tables=only, progress=progress)


def _restore_task(backup_path: str, target: str | None) -> str:
    """A restore as its progress lines name it: by its target, else by the backup."""
    from tenangdb.actions.verify import backup_name

    return f"restore {target or backup_name(backup_path)}"


def _restore_to_point(state: State, database: str | None, target: str | None, yes: bool, allow_system_schema: bool,
                      to_time: str | None, to_gtid: str | None, to_position: str | None, dry_run: bool,
                      conflicts: bool, from_remote: bool = False) -> None:
    """restore -b DB --to-time/--to-gtid/--to-position: base backup + binlog replay (actions/pitr.py);
    with --from-remote, the base and the archive both come from upload.destination."""
    from tenangdb.actions import observe, pitr, recover
    from tenangdb.actions import restore as action
    from tenangdb.mysql.mariabackup import INSTANCE

    if sum(bool(x) for x in (to_time, to_gtid, to_position)) != 1:
        raise click.UsageError("give one of --to-time, --to-gtid or --to-position" +
                               (" (--dry-run goes with them)" if dry_run else ""))
    if conflicts:
        raise click.UsageError("--to-time/--to-gtid/--to-position take -b DATABASE (its base backup is chosen); "
                               "--all, --latest, --before and --tables do not go with them")
    if not database or not _names_a_database(database, False):
        raise click.UsageError("--to-time/--to-gtid/--to-position need -b DATABASE (a database name)")
    if database == INSTANCE:
        raise click.UsageError(f"{INSTANCE} is the whole instance: restore it to a point in time with --datadir DIR "
                               "(no -b), or one database of it with -b DATABASE")
    when = recover.parse_time(to_time) if to_time else None
    target = target or database
    action.check_name(target, allow_system_schema=allow_system_schema)
    loaded = state.load()
    with (pitr.fetched_archive(loaded) if from_remote else contextlib.nullcontext(None)) as archive:
        the_plan = pitr.plan(loaded, database, target, to_time=when, to_gtid=to_gtid, to_position=to_position,
                             archive=archive, from_remote=from_remote)
        for line in the_plan.lines():
            click.echo(line)
        if dry_run:
            return
        with observe.restore_run(loaded, database):
            seconds = pitr.run(loaded, the_plan, confirm=_confirm_factory(yes),
                               allow_system_schema=allow_system_schema)
    click.echo(f"restored {database} into {target!r} as of {the_plan.stop.what} (replay {seconds:.1f}s)")


def _restore_datadir_to_point(state: State, datadir: str, to_time: str | None, to_gtid: str | None,
                              to_position: str | None, dry_run: bool, from_remote: bool = False, start: bool = False,
                              port: int | None = None) -> None:
    """restore --datadir DIR --to-*: the newest physical base before the stop point, replayed to
    it in a server of our own, into DIR (actions/instance.py); with --from-remote, the base
    (with its chain) and the binlog mirror downloaded from upload.destination."""
    from tenangdb.actions import fetch, observe, pitr, recover
    from tenangdb.actions import restore as action
    from tenangdb.mysql.mariabackup import INSTANCE

    if sum(bool(x) for x in (to_time, to_gtid, to_position)) != 1:
        raise click.UsageError("give one of --to-time, --to-gtid or --to-position" +
                               (" (--dry-run goes with them)" if dry_run else ""))
    when = recover.parse_time(to_time) if to_time else None
    directory = Path(datadir).absolute()
    action.check_datadir(directory)
    loaded = state.load()
    with (pitr.fetched_archive(loaded) if from_remote else contextlib.nullcontext(None)) as archive:
        the_plan = pitr.plan(loaded, INSTANCE, None, to_time=when, to_gtid=to_gtid, to_position=to_position,
                             archive=archive, from_remote=from_remote, datadir=directory)
        for line in the_plan.lines():
            click.echo(line)
        if dry_run:
            return
        with observe.restore_run(loaded, INSTANCE), _watched(f"restore {directory.name}") as progress:
            if the_plan.base.location == "local":
                done = action.run_datadir(loaded, Path(the_plan.base.key), directory, the_plan=the_plan,
                                          progress=progress)
            else:
                with fetch.fetched(loaded, the_plan.base.key, progress=progress) as folder:
                    done = action.run_datadir(loaded, folder, directory, the_plan=the_plan, progress=progress)
    click.echo(f"OK {done.path.name if from_remote else done.path} replayed to {the_plan.stop.what} -> data "
               f"directory {done.datadir} ({human_size(done.plain_bytes)} in {done.duration:.1f}s, replay "
               f"{the_plan.replay_seconds:.1f}s{f', owned by {done.owner}' if done.owner else ''})")
    if the_plan.gtid_position:
        click.echo(f"its gtid_slave_pos is the source's GTID position at the stop point: {the_plan.gtid_position}")
    _datadir_ready(loaded, done, start, port)


def _restore_from_instance(state: State, backup_path: str, database: str, target: str | None, yes: bool,
                           allow_system_schema: bool, from_remote: bool = False) -> None:
    """restore -b PHYSICAL --source-database DB [-d TARGET]: one database out of a physical backup
    (with --from-remote, a remote copy downloaded with its chain)."""
    from tenangdb.actions import fetch, instance, observe
    from tenangdb.actions import restore as action

    target = target or database
    action.check_name(target, allow_system_schema=allow_system_schema)
    loaded = state.load()
    remote = from_remote or fetch.is_remote_spec(backup_path, loaded)
    with observe.restore_run(loaded, database), _watched(f"restore {target}") as progress:
        with (fetch.fetched(loaded, backup_path, progress=progress) if remote
              else contextlib.nullcontext(_choose_backup(loaded, backup_path))) as chosen:
            done = instance.restore_database(loaded, chosen, database, target, confirm=_confirm_factory(yes),
                                             allow_system_schema=allow_system_schema, progress=progress)
    click.echo(f"OK {done.path.name}: {database!r} -> {target!r} ({human_size(done.plain_bytes)} copied, "
               f"{done.duration:.1f}s in all)")


def _with_instance_backups(place, database: str):
    """The catalogue with the physical backups whose instance holds `database` among its backups."""
    import dataclasses

    from tenangdb.actions import pitr

    return dataclasses.replace(place, by_database={**place.by_database, database: pitr.bases_of(place, database)})


def _restore_datadir(state: State, backup_path: str, datadir: str, latest: bool, before: str | None,
                     from_remote: bool, start: bool, port: int | None) -> None:
    """restore -b BACKUP --datadir DIR: one physical backup (here, or a remote copy downloaded
    with its chain), or with -b _instance --latest/--before the newest good one (one that fails
    its verification is passed over for the one before it)."""
    from tenangdb.actions import fetch, observe, recover
    from tenangdb.actions import restore as action
    from tenangdb.mysql.mariabackup import INSTANCE

    when = recover.parse_time(before) if before else None
    directory = Path(datadir).absolute()
    action.check_datadir(directory)  # before a download, not after
    loaded = state.load()
    remote = from_remote or fetch.is_remote_spec(backup_path, loaded)
    by_name = _names_a_database(backup_path, remote)
    if by_name and backup_path != INSTANCE:
        raise click.UsageError(f"--datadir restores the whole instance: -b {INSTANCE} (with --latest or --before) or "
                               f"one physical backup, not the database {backup_path!r}")
    if (latest or when is not None) and not by_name:
        raise click.UsageError(f"--latest and --before choose among the instance's backups: -b {INSTANCE}")
    name = backup_path.rstrip("/").rsplit("/", 1)[-1]
    with observe.restore_run(loaded, INSTANCE), _watched(f"restore {name}") as progress:
        if by_name:
            place = recover.load_catalogue(loaded, remote=remote)
            entries = recover.pick(place, INSTANCE, latest=latest, before=when,
                                   choose=_choose_entry if _interactive() else None)
            done = recover.first_good(loaded, place, entries, how="restore", progress=progress,
                                      use=lambda folder, entry: action.run_datadir(loaded, folder, directory,
                                                                                   progress=progress))
        elif remote:
            with fetch.fetched(loaded, backup_path, progress=progress) as folder:
                done = action.run_datadir(loaded, folder, directory, progress=progress)
        else:
            done = action.run_datadir(loaded, _choose_backup(loaded, backup_path), directory, progress=progress)
    shown = done.path.name if remote else done.path
    click.echo(f"OK {shown} -> data directory {done.datadir} ({human_size(done.plain_bytes)} in "
               f"{done.duration:.1f}s{f', owned by {done.owner}' if done.owner else ''})")
    _datadir_ready(loaded, done, start, port)


def _datadir_ready(loaded, done, start: bool, port: int | None) -> None:
    """After a restore into a data directory: the command that starts a server on it, or with
    --start a server of ours on it until SIGINT/SIGTERM (actions/instance.serve)."""
    from tenangdb.actions import instance

    if not start:
        click.echo(f"start a server on it: {done.start_command}")
        return

    def ready(serving) -> None:
        reach = f"and on 127.0.0.1:{serving.port}" if serving.port else "only (no TCP)"
        click.echo(f"a server of ours runs on {serving.datadir} (PID {serving.pid}), with the restored instance's "
                   f"own accounts, on the socket {serving.socket} {reach}; replication and the event scheduler are "
                   "off")
        click.echo(f"connect: mariadb --socket={serving.socket} -u USER -p"
                   + (f"   or: mariadb -h 127.0.0.1 -P {serving.port} -u USER -p" if serving.port else ""))
        click.echo(f"its log: {serving.log}")
        click.echo("Ctrl-C (or SIGTERM) shuts it down cleanly")

    served = instance.serve(loaded, done.datadir, port=port, ready=ready)
    how = "shut down from a client" if served.by_client else "shut down cleanly"
    click.echo(f"the server on {done.datadir} was {how}; start a server on it: {done.start_command}")


def observe_restore(loaded, path):
    from tenangdb.actions import observe

    return observe.restore_run(loaded, observe.database_of(path))


def _names_a_database(value: str, remote: bool) -> bool:
    """Whether -b names a database rather than a backup: no path that exists, no folder, no
    backup name (`{db}-YYYY-MM-DD_HH-MM-SS`), no remote: prefix."""
    from tenangdb.actions import fetch
    from tenangdb.repository.naming import BackupRef

    if "/" in value or value.startswith(fetch.PREFIX) or BackupRef.from_name(value) is not None:
        return False
    return remote or not Path(value).exists()


def _restore_entries(loaded, place, entries, target: str, confirm, allow_system_schema: bool,
                     tables: list[str] | None = None, database: str | None = None):
    """Restore the first of `entries` that proves whole, into `target`; a physical backup among
    them gives its database `database` (actions/instance.py)."""
    from tenangdb.actions import instance, observe, recover
    from tenangdb.actions import restore as action
    from tenangdb.mysql.mariabackup import INSTANCE

    database = database or entries[0].database
    action.check_name(target, allow_system_schema=allow_system_schema)
    with observe.restore_run(loaded, database), _watched(f"restore {target}") as progress:
        # The connection and the target first: a download can take long.
        checked = action.check_target(loaded, target, confirm=confirm, allow_system_schema=allow_system_schema,
                                      source=entries[0].name, tables=tables) if place.location == "remote" else None

        def use(folder, entry):
            if entry.database == INSTANCE:
                return instance.restore_database(loaded, folder, database, target, confirm=confirm,
                                                 allow_system_schema=allow_system_schema, progress=progress)
            return action.run(loaded, folder, target, confirm=confirm, allow_system_schema=allow_system_schema,
                              checked=checked, tables=tables, progress=progress)
        return recover.first_good(loaded, place, entries, use, how="restore", progress=progress)


def _restore_all(loaded, place, chosen: dict, prefix: str, suffix: str, confirm, allow_system_schema: bool) -> None:
    """Each database into its own name; one line each, a summary, exit 4 if any failed."""
    failed = []
    for database, entries in chosen.items():
        target = f"{prefix}{database}{suffix}"
        try:
            with _task_display():  # one board for them all
                restored = _restore_entries(loaded, place, entries, target, confirm, allow_system_schema)
        except Interrupted:
            raise
        except TenangDBError as exc:
            failed.append(database)
            log.error("restore of %s into %r failed: %s", database, target, exc)
            click.echo(f"FAILED {database} -> {target}: {exc}")
            continue
        click.echo(f"OK     {database} -> {target} ({restored.path.name}, {human_size(restored.plain_bytes)} "
                   f"in {restored.duration:.1f}s)")
    if failed:
        click.echo(f"error: {len(failed)} of {len(chosen)} restores failed: {', '.join(failed)}", err=True)
        raise SystemExit(EXIT_BACKUP)
    click.echo(f"restored {len(chosen)} database{'s' if len(chosen) != 1 else ''}")


def _choose_entry(entries):
    for number, entry in enumerate(entries, 1):
        state = "verified" if entry.verified else "not verified"
        click.echo(f"{number:3d}  {entry.location} {entry.name}  ({state})", err=True)
    pick = click.prompt("Restore which backup?", type=click.IntRange(1, len(entries)), err=True)
    return entries[pick - 1]


def _choose_backup(loaded, backup_path: str) -> Path:
    """The one backup a restore's --backup-path names; for a folder above several, the operator
    picks one on a terminal, and without one it is a usage error listing them."""
    from tenangdb.actions import verify
    from tenangdb.repository.naming import BackupRef

    if not Path(backup_path).exists() and (ref := BackupRef.from_name(backup_path)) is not None:
        return ref.path(Path(loaded.settings.backup.directory))  # a bare backup name
    found = verify.expand_backup_path(loaded, backup_path)
    if len(found) == 1:
        return found[0]
    found.sort(key=lambda p: p.name, reverse=True)  # names carry the time: newest first
    if not _interactive():
        shown = ", ".join(str(p) for p in found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
        raise click.UsageError(f"{backup_path} holds {len(found)} backups ({shown}); name one with --backup-path")
    for number, path in enumerate(found, 1):
        click.echo(f"{number:3d}  {path}", err=True)
    pick = click.prompt("Restore which backup?", type=click.IntRange(1, len(found)), err=True)
    return found[pick - 1]


@cli.command()
@click.option("--databases", help="Comma-separated databases; only their backups.")
@click.option("--backup-path", "-b", "backup_paths", multiple=True, help="One backup folder (may be repeated).")
@click.pass_obj
def upload(state: State, databases: str | None, backup_paths: tuple[str, ...]) -> None:
    """Copy backups that are not yet off-site to upload.destination, and verify the copies."""
    from tenangdb.actions import observe
    from tenangdb.actions import upload as action

    loaded = state.load()
    root = Path(loaded.settings.backup.directory)
    paths = [action.resolve_local(root, p) for p in backup_paths] if backup_paths else None
    results = action.run(loaded, databases=_split(databases), paths=paths)
    observe.uploaded(loaded, results)
    for r in results:
        rel = r.path.relative_to(root).as_posix() if r.path.is_relative_to(root) else str(r.path)
        if r.ok:
            click.echo(f"OK     {rel} -> {r.remote} ({human_size(r.size)}, verified: {r.method})")
        else:
            click.echo(f"FAILED {rel}: {r.error}")
    if not results:
        click.echo(f"nothing to upload: every backup is already on {loaded.settings.upload.destination}")
    failed = [r for r in results if not r.ok]
    if failed:
        click.echo(f"error: {len(failed)} of {len(results)} uploads failed; the local backups are kept "
                   "(run tenangdb upload again)", err=True)
        raise SystemExit(EXIT_UPLOAD)


def _configured_identities(cfg) -> list:
    """The identities and passphrase `list` judges each backup's key against; none when the
    key file cannot be read (every encrypted backup then shows its key as missing)."""
    from tenangdb.stream.crypto import load_identities

    try:
        return load_identities(cfg.backup.encryption)
    except TenangDBError:
        return []


def _key_cell(entry) -> str:
    if not entry.needs_key:
        return "-"
    return entry.needs_key + ("" if entry.key_available else " (missing)")


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _pitr_window(loaded, wanted: set[str]):
    """The binlog archive's recoverable window (actions/pitr.window), or None without an archive."""
    from tenangdb.actions import pitr

    try:
        found = pitr.window(loaded)
    except TenangDBError as exc:
        click.echo(f"note: the binlog archive cannot be read: {exc}", err=True)
        return None
    if found is not None and wanted:
        found.starts = {db: t for db, t in found.starts.items() if db in wanted}
    return found


def _window_line(found) -> str:
    from datetime import datetime, timezone

    at = lambda t: datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")  # noqa: E731
    head = f"point-in-time window (binlog of {found.server}"
    head += f", {found.gaps} gap{'s' if found.gaps != 1 else ''} recorded): " if found.gaps else "): "
    if found.end is None or not found.starts:
        return head + ("nothing archived yet" if found.end is None else
                       "none (no base backup with a binlog position and a whole archived chain after it)")
    return head + "; ".join(f"{db} {at(t)} .. {at(found.end)} UTC" for db, t in sorted(found.starts.items()))


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object per backup) instead of a table.")
@click.option("--databases", help="Comma-separated databases to show.")
@click.option("--local", "only_local", is_flag=True, help="Only the local backups (no rclone call).")
@click.option("--remote", "only_remote", is_flag=True, help="Only the remote backups, with what the remote's own "
              "records say of each (all a fresh machine needs).")
@click.pass_obj
def list_backups(state: State, as_json: bool, databases: str | None, only_local: bool, only_remote: bool) -> None:
    """Show local and remote backups per database: name, time, size, encryption, verification, upload."""
    import json as json_mod

    from tenangdb.actions import catalog
    from tenangdb.remote.rclone import Rclone

    loaded = state.load()
    cfg = loaded.settings
    root = Path(cfg.backup.directory)
    destination = cfg.upload.destination
    if only_local and only_remote:
        raise click.UsageError("--local and --remote exclude each other")
    if only_remote and not destination:
        raise ConfigError("list --remote: upload.destination is not set")
    entries = [] if only_remote else catalog.local_entries(root, destination)
    remote_error = None
    if destination and not only_local:
        try:
            entries += catalog.remote_entries(Rclone(cfg.upload), root)
        except TenangDBError as exc:
            remote_error = str(exc)
    wanted = set(_split(databases) or [])
    if wanted:
        entries = [e for e in entries if e.database in wanted]
    catalog.mark_keys(entries, _configured_identities(cfg))
    entries.sort(key=lambda e: (e.database, e.time.isoformat() if e.time else "", e.location, e.rel))
    pitr_window = _pitr_window(loaded, wanted) if not only_remote else None
    if as_json:
        click.echo(json_mod.dumps({"backups": [e.as_json() for e in entries], "remote_error": remote_error,
                                   "pitr_window": pitr_window.as_json() if pitr_window else None}, indent=2))
    else:
        backups = [e for e in entries if e.kind == "backup"]
        rows = [("DATABASE", "WHERE", "NAME", "TIME (UTC)", "SIZE", "ENC", "KEY", "VERIFIED", "UPLOADED", "LOSSES")]
        for e in backups:
            how = "; ".join(part for part in (e.verified_how, e.proof) if part)
            verified = ("yes" if e.verified else "no") + (f" ({how})" if how else "")
            if e.legacy:
                verified = "legacy (no manifest: unverified)"
            if e.problem:
                verified = "DAMAGED"
            uploaded = "-" if e.location == "remote" else (e.uploaded or "no")
            rows.append((e.database, e.location, e.name, _when(e.time), human_size(e.size),
                         "age" if e.encrypted else "-" if e.legacy else "no", _key_cell(e), verified, uploaded, str(len(e.losses)) if e.losses else "-"))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        if not backups:
            click.echo(f"no backups under {root}" + (f" or on {destination}" if destination and not only_local else ""))
        if pitr_window is not None:
            click.echo(_window_line(pitr_window))
        for e in entries:
            if e.kind != "backup" or e.problem:
                what = "in progress in a running tenangdb run" if e.in_progress else \
                    {"partial": "unfinished backup", "foreign": "not a backup"}.get(e.kind, "damaged")
                click.echo(f"note: {e.location} {e.rel}: {what}" + (f" ({e.problem})" if e.problem else ""),
                           err=True)
    if remote_error:
        click.echo(f"error: cannot list the remote backups: {remote_error}", err=True)
        raise SystemExit(EXIT_UPLOAD)


@cli.command()
@click.option("--dry-run", is_flag=True, help="Print the plan and delete nothing.")
@click.option("--yes", "-y", is_flag=True, help="Delete without asking (for timers and scripts).")
@click.option("--force", is_flag=True, help="Run even on a weekday when cleanup.weekend_only is set.")
@click.option("--databases", help="Comma-separated databases; replaces cleanup.databases.")
@click.option("--max-age-days", type=click.IntRange(min=1), help="Local age limit; replaces cleanup.max_age_days.")
@click.pass_obj
def cleanup(state: State, dry_run: bool, yes: bool, force: bool, databases: str | None,
            max_age_days: int | None) -> None:
    """Delete expired backups, locally and remotely, by the cleanup policy (shows the plan first)."""
    from tenangdb.actions import cleanup as action
    from tenangdb.actions import observe
    from tenangdb.errors import CleanupFailed

    from tenangdb import orphans

    state.reap = False  # whether this run may remove anything is known once the config is
    loaded = state.load(original_log_file=True)
    if loaded.from_original and not dry_run:
        from tenangdb.config.original import unreviewed_cleanup
        log.warning("%s", unreviewed_cleanup(loaded.path))
        dry_run = True
    if not dry_run:
        state.reaped = orphans.reap_for(loaded)
    for leftover in orphans.find_for(loaded) if dry_run else state.reaped:
        verb = "would remove" if dry_run else "removed" if leftover.error is None else "cannot remove"
        click.echo(f"{verb} {leftover.describe()}" + (f": {leftover.error}" if leftover.error else ""))
    if loaded.settings.cleanup.weekend_only and not force and not dry_run and not _weekend():
        click.echo("cleanup runs only on Saturday and Sunday (cleanup.weekend_only); use --force to run now",
                   err=True)
        return
    the_plan = action.make_plan(loaded, databases=_split(databases), max_age_days=max_age_days)
    _show_plan(the_plan, dry_run)
    if dry_run:
        if the_plan.remote_error:
            raise CleanupFailed(f"cannot list the remote backups: {the_plan.remote_error}")
        return
    if the_plan.deletions and not yes:
        if not _interactive():
            raise CleanupFailed("nothing deleted: no terminal to confirm on; pass --yes to delete without asking")
        if not click.confirm(f"Delete {len(the_plan.deletions)} item(s), freeing {human_size(the_plan.freed)}?",
                             default=False, err=True):
            click.echo("cleanup cancelled; nothing was deleted", err=True)
            return
    started = time.monotonic()  # the time a person took to confirm is not the cleanup's
    outcome = action.execute(loaded, the_plan)
    observe.cleaned(loaded, the_plan, outcome, time.monotonic() - started)
    for decision, why in outcome.kept_back:
        click.echo(f"kept   {decision.item.location:6} {decision.item.rel}: {why}")
    click.echo(f"deleted {len(outcome.deleted)} item(s), freed {human_size(outcome.freed)}")
    action.check_outcome(outcome, the_plan)


def _show_plan(the_plan, dry_run: bool) -> None:
    head = "dry run: nothing will be deleted\n" if dry_run else ""
    click.echo(f"{head}cleanup plan:")
    for decision in sorted(the_plan.decisions, key=lambda d: (d.item.database, d.item.location, d.item.rel)):
        item = decision.item
        action_word = "DELETE" if decision.delete else "keep"
        size = human_size(item.size) if decision.delete else ""
        click.echo(f"  {action_word:6} {item.location:6} {item.rel}  {size + '  ' if size else ''}({decision.reason})")
    kept = sum(1 for d in the_plan.decisions if not d.delete)
    click.echo(f"to delete: {len(the_plan.deletions)} item(s), {human_size(the_plan.freed)}; kept: {kept}")


@cli.command()
@click.option("--listen", help="Address to listen on; overrides metrics.listen (default 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port; overrides metrics.port (default 9090).")
@click.option("--metrics-file", type=click.Path(dir_okay=False), help="Metrics state file to serve; overrides "
              "metrics.storage_path.")
@click.pass_obj
def exporter(state: State, listen: str | None, port: int | None, metrics_file: str | None) -> None:
    """Serve the metrics of past runs to Prometheus (/metrics, /healthz, /health, /ready) until stopped."""
    from tenangdb.actions import exporter as action

    action.run(state.load(), listen, port, metrics_file)


@cli.command("binlog")
@click.option("--once", is_flag=True, help="One cycle (close the open file if it has new transactions, archive "
              "every closed file not yet archived) and exit; for timers. Without it: a cycle every "
              "binlog.max_lag / 2 until stopped.")
@click.pass_obj
def binlog(state: State, once: bool) -> None:
    """Archive the server's binary log (closed files, sealed like backups) for point-in-time restore."""
    from tenangdb.actions import binlog as action

    loaded = state.load()

    def report(done, error) -> None:
        if done is not None and done.gaps:
            click.echo(f"error: binlog gap: {', '.join(n for g in done.gaps for n in g.missing)} were purged from "
                       "the server before they were archived", err=True)
        action.report(loaded, done, error)

    if not once:
        action.loop(loaded, report)
        return
    try:
        done = action.cycle(loaded)
    except Exception as exc:
        from tenangdb.errors import interrupt_requested

        if not interrupt_requested():
            action.report(loaded, None, exc)
        raise
    report(done, None)
    click.echo(f"archived {len(done.archived)} binlog file{'s' if len(done.archived) != 1 else ''}"
               + (f": {done.archived[0].name}..{done.archived[-1].name}" if done.archived else "")
               + (f"; uploaded {len(done.uploaded)}" if done.uploaded else ""))
    if done.gaps:
        raise SystemExit(EXIT_BACKUP)
    if done.upload_error:
        click.echo(f"error: binlog upload failed: {done.upload_error}", err=True)
        raise SystemExit(EXIT_UPLOAD)


@cli.command("config")
@click.option("--sample", is_flag=True, help="Print a commented sample config with every key, its default and "
              "what it does (secrets as ${VAR}); reads no config file.")
@click.option("--migrate", is_flag=True, help="Review a config of the original TenangDB: every key whose "
              "behaviour changes here, what the original did and what this does.")
@click.option("--write", is_flag=True, help="With --migrate: acknowledge the review by adding config_version: 2 "
              "to the file (the old file is kept as <name>.original).")
@click.pass_obj
def show_config(state: State, sample: bool, migrate: bool, write: bool) -> None:
    """Show the effective configuration and where each value came from (secrets redacted)."""
    from tenangdb.config.loader import effective_items

    if write and not migrate:
        raise click.UsageError("--write goes with --migrate")
    if migrate:
        _migrate(state, write)
        return
    if sample:
        from tenangdb.config.sample import sample_yaml

        click.echo(sample_yaml(), nl=False)
        return
    state.reap = False  # it only shows the configuration
    loaded = state.load()
    if loaded.path:
        click.echo(f"# config file: {loaded.path.resolve()}")
    else:
        click.echo("# no config file found; searched: " + ", ".join(str(p) for p in loaded.searched))
    for key, value, source in effective_items(loaded):
        click.echo(f"{key} = {value}    # {source}")


def _migrate(state: State, write: bool) -> None:
    from tenangdb.config import original
    from tenangdb.config.loader import discover, normalize_keys, read_raw

    state.reap = False
    problem: ConfigError | None = None
    try:
        path = state.load().path
    except ConfigError as exc:
        # A file the original accepted may not load here (max_age_days: 0, no_schemas: true):
        # the review says why, then the error stands.
        problem = exc
        path = discover(state.config_path or os.environ.get("TENANGDB_CONFIG"))[0]
    if path is None:
        if problem:
            raise problem
        click.echo("nothing to review: no config file found")
        return
    try:
        raw, _ = normalize_keys(read_raw(path))
    except ConfigError:
        raise problem or ConfigError(f"cannot read {path}") from None
    why = original.not_original_because(raw) if raw else "it sets nothing"
    if why:
        if problem:
            raise problem
        click.echo(f"nothing to review: {path} is not a config of the original TenangDB ({why})")
        return
    click.echo(f"{path} is a config of the original TenangDB. What its keys do here, where that differs "
               "from the original:")
    for line in original.review(raw):
        click.echo(line)
    if problem:
        click.echo("this file does not load here; fix what the error below names, then run this again", err=True)
        raise problem
    if not write:
        click.echo(f"until this is acknowledged, cleanup runs as --dry-run and an explicit backup.timeout is not "
                   f"enforced; acknowledge it with `{original.MIGRATE_COMMAND} --write`")
        return
    copy = original.write_mark(path)
    click.echo(f"wrote {original.MARK}: {original.VERSION} into {path} (the old file is kept as {copy}); cleanup "
               "now deletes by these keys and backup.timeout is enforced")


class _Questions:
    """Prompts on a terminal; without one every question takes its default and nothing waits."""

    def __init__(self, interactive: bool) -> None:
        self.interactive = interactive

    def ask(self, question: str, default: str | None = None, *, secret: bool = False) -> str:
        if not self.interactive:
            if default is None:
                raise ConfigError(f"no terminal to ask {question!r}: give it as a flag")
            return default
        return click.prompt(question, default=default, hide_input=secret, show_default=not secret and bool(default),
                            err=True)

    def confirm(self, question: str, default: bool) -> bool:
        if not self.interactive:
            return default
        return click.confirm(question, default=default, err=True)

    def say(self, line: str = "") -> None:
        click.echo(line, err=True)


def _default_init_config() -> str:
    if os.geteuid() == 0:
        return "/etc/tenangdb/config.yaml"
    return str(Path(platformdirs.user_config_dir("tenangdb")) / "config.yaml")


class _KeyOption(click.Option):
    """A flag that answers for a config key: its choices or range, the default it shows and,
    unless it says more, its help are the key's in the schema. They are read when the command
    is used, so that other commands start without loading the schema."""

    def __init__(self, *args, key: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.key = key
        self.resolved = False

    def resolve(self) -> None:
        if self.resolved:
            return
        from tenangdb.config.schema import bounds_of, choices_of, default_of, field_of

        info = field_of(self.key)
        if choices_of(self.key):
            self.type = click.Choice(choices_of(self.key))
        elif info.annotation is int:
            self.type = click.IntRange(*bounds_of(self.key))
        if not self.help:
            text = info.description or ""
            self.help = text[:1].upper() + text[1:] + "."
        default = default_of(self.key)
        shown = f"; default {default}" if default not in (None, [], "") else ""
        self.help += f" (config key {self.key}{shown})"
        self.resolved = True


class _InitCommand(click.Command):
    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        for param in self.params:
            if isinstance(param, _KeyOption):
                param.resolve()
        return super().get_params(ctx)


def _key_option(*decls: str, key: str, help: str | None = None):
    return click.option(*decls, cls=_KeyOption, key=key, help=help)


@cli.command(cls=_InitCommand)
@click.option("--config", "local_config", type=click.Path(dir_okay=False),
              help="Where to write the config (as tenangdb --config; default /etc/tenangdb/config.yaml as root, "
              "else the user config dir).")
@click.option("--force", is_flag=True, help="Overwrite an existing config, secrets file and units (an existing "
              "age identity is always kept).")
@click.option("--dry-run", is_flag=True, help="Check and print what would be written; write nothing.")
@click.option("--deploy-systemd", is_flag=True, help="Also create the service user and install hardened "
              "systemd units (as root).")
@click.option("--systemd-user", default="tenangdb", show_default=True, help="The account the units run as.")
@click.option("--root", "root", type=click.Path(file_okay=False), default="/", show_default=True,
              help="Write every file under this folder instead of / (packaging); nothing is enabled.")
@click.option("--binary", help="The tenangdb executable the units run (default: this one).")
@click.option("--rotate-db-password", is_flag=True, help="Only give the configured database account a new "
              "generated password: set on the server, tested, then written to the secrets file (the config's "
              "${NAME} for database.password); the old one stops working. Nothing else is changed.")
@_key_option("--host", key="database.host")
@_key_option("--port", key="database.port", help="Database port.")
@_key_option("--socket", key="database.socket", help="Database unix socket.")
@_key_option("--db-user", "user", key="database.username", help="Database user for backups.")
@click.option("--password-stdin", is_flag=True, help="Read the database password from stdin (or set "
              "TENANGDB_DB_PASSWORD); passwords are never taken as arguments.")
@_key_option("--databases", key="backup.databases", help="Comma-separated databases, or all.")
@_key_option("--backup-dir", key="backup.directory", help="Backup directory.")
@_key_option("--compression", key="backup.compression.format", help="Compression.")
@_key_option("--engine", key="backup.engine", help="Backup engine (its grants are printed; mariabackup: the "
             "data directory's access is checked and the backup unit reads it).")
@click.option("--encryption", type=click.Choice(["generate", "recipients", "none"]),
              help="generate: an age identity beside the config (an existing one is reused); recipients: encrypt "
              "to --recipient keys whose identity is kept elsewhere.")
@click.option("--recipient", "recipients", multiple=True, help="An age public key to encrypt to (repeatable).")
@click.option("--key-file", help="Where a generated identity goes (default: beside the config).")
@click.option("--secrets-file", help="Where the secrets go (default: secrets.env beside the config).")
@click.option("--state-dir", help="Tracking and metrics folder (default /var/lib/tenangdb as root).")
@click.option("--log-file", help="Log file (default /var/log/tenangdb/tenangdb.log as root; empty for none).")
@_key_option("--upload", key="upload.destination", help="rclone destination remote:path (tested now); empty for "
             "none.")
@_key_option("--rclone-config", key="upload.rclone_config_path", help="rclone config file for uploads.")
@click.option("--metrics/--no-metrics", default=None, help="Record metrics for the exporter.")
@click.option("--binlog/--no-binlog", default=None, help="Archive the binary log for point-in-time recovery "
              "(binlog.enabled; with --deploy-systemd, tenangdb-binlog.service). Asked on a terminal when the "
              "server's binary log is on.")
@_key_option("--metrics-listen", key="metrics.listen", help="Exporter address (elsewhere than loopback, basic "
             "auth is set up).")
@_key_option("--metrics-port", key="metrics.port", help="Exporter port.")
@_key_option("--metrics-user", key="metrics.basic_auth.username", help="Basic auth user for the exporter; its "
             "password is generated (or TENANGDB_METRICS_BASIC_AUTH_PASSWORD).")
@click.pass_obj
def init(state: State, local_config: str | None, root: str, password_stdin: bool, databases: str | None,
         recipients: tuple[str, ...], rotate_db_password: bool, **flags) -> None:
    """Set up TenangDB: check the database, tools and grants; write the config (0640), the secrets
    (0600) and the folders; with --deploy-systemd, the service user and hardened units.

    On a terminal it asks; without one every answer comes from a flag or its default, and a
    missing required answer (--db-user, --databases) is an error (exit 2)."""
    from tenangdb.actions import init as action
    from tenangdb.logs import setup

    if rotate_db_password:
        if local_config:
            state.config_path = local_config
        action.rotate_db_password(state.load(check_recipients=False), say=lambda line: click.echo(line, err=True))
        return
    setup(state.log_level or "info")
    interactive = _interactive() and not password_stdin
    password = os.environ.get(action.DB_PASSWORD_VAR)
    if password_stdin:
        if sys.stdin.isatty():  # never echo a password typed on a terminal
            password = click.prompt("Database password", hide_input=True, default="", show_default=False,
                                    err=True)
        else:
            password = sys.stdin.readline().rstrip("\r\n")
    if not interactive:
        missing = [flag for flag, value in (("--db-user", flags["user"]), ("--databases", databases)) if not value]
        if missing:
            raise ConfigError(f"no terminal to ask on: give {' and '.join(missing)} (see tenangdb init --help)")
    # Every other flag is named as the answer it gives.
    answers = action.Answers(
        config=local_config or state.config_path or _default_init_config(), root=Path(os.path.abspath(root)),
        password=password, databases=_split(databases) if databases else None, recipients=list(recipients),
        metrics_password=os.environ.get(action.METRICS_PASSWORD_VAR), **flags)
    done = action.run(answers, _Questions(interactive))
    layout = done["layout"]
    if answers.dry_run:
        click.echo(f"# dry run: nothing was written\n# --- {layout.config} (0640)")
        click.echo(done["config"], nl=False)
        if done["secrets"]:
            click.echo(f"# --- {layout.secrets} (0600): {', '.join(done['secrets'])} (values not shown)")
        for name, text in done["units"].items():
            click.echo(f"# --- /etc/systemd/system/{name}")
            click.echo(text, nl=False)
        if done.get("logrotate"):
            click.echo("# --- /etc/logrotate.d/tenangdb")
            click.echo(done["logrotate"], nl=False)
        return
    click.echo("wrote: " + ", ".join(done["files"]), err=True)
    click.echo(f"next: tenangdb --config {layout.config} doctor", err=True)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.option("--max-age", default="26h", show_default=True, help="Oldest acceptable last successful backup.")
@click.option("--config", "local_config", type=click.Path(dir_okay=False), help="Same as tenangdb --config.")
@click.option("--unit-dir", default="/etc/systemd/system", hidden=True)
@click.pass_obj
def doctor(state: State, as_json: bool, max_age: str, local_config: str | None, unit_dir: str) -> None:
    """Check this installation against the security checklist; exit 1 if any check fails."""
    import json

    from tenangdb.actions import doctor as action
    from tenangdb.config.schema import parse_duration

    try:
        limit = parse_duration(max_age)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--max-age") from None
    if local_config:
        state.config_path = local_config
    state.reap = False  # doctor changes nothing: it reports leftovers (check "leftovers"), cleanup removes them
    checks = action.run(state.load(check_recipients=False), max_age=limit, unit_dir=unit_dir)
    failed = [c for c in checks if c.status == action.FAIL]
    if as_json:
        click.echo(json.dumps({"ok": not failed, "checks": [c.as_dict() for c in checks]}, indent=2))
    else:
        for c in checks:
            click.echo(f"{c.status.upper():4}  {c.name:17} {c.message}")
            if c.fix and c.status != action.PASS:
                click.echo(f"{'':23}fix: {c.fix}")
        warned = sum(c.status == action.WARN for c in checks)
        click.echo(f"{len(checks) - len(failed) - warned} passed, {warned} warnings, {len(failed)} failed")
    if failed:
        raise SystemExit(EXIT_GENERAL)


@cli.command()
def version() -> None:
    """Print the version of tenangdb and of the tools it drives."""
    import platform
    import shutil

    click.echo(f"tenangdb {__version__}")
    click.echo(f"python {platform.python_version()} on {platform.system().lower()}/{platform.machine()}")
    for name in ("mariadb-dump", "mysqldump", "mariadb", "mysql"):
        path = shutil.which(name)
        if path:
            from tenangdb.mysql.tools import tool_version
            click.echo(f"{name}: {tool_version(path)}")


@cli.group()
def key() -> None:
    """Manage age encryption keys."""


def _default_key_path() -> Path:
    base = Path("/etc/tenangdb") if os.geteuid() == 0 else Path(platformdirs.user_config_dir("tenangdb"))
    return base / "age-identity.txt"


@key.command("generate")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Where to write the identity "
              "(default: /etc/tenangdb/age-identity.txt as root, else the user config dir).")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def key_generate(output: str | None, force: bool) -> None:
    """Write a new age identity (0600) and print its public recipient."""
    from tenangdb.stream.crypto import generate_identity_file

    path = Path(output) if output else _default_key_path()
    recipient = generate_identity_file(path, force=force)
    click.echo(f"wrote a new age identity to {path} (mode 0600); keep a copy off this machine", err=True)
    click.echo(recipient)


@key.command("rotate")
@click.option("--key-file", type=click.Path(dir_okay=False), help="The identity file to rotate (default: the "
              "config's backup.encryption.key_file).")
@click.pass_obj
def key_rotate(state: State, key_file: str | None) -> None:
    """Add a new age identity to the key file for new backups; the old ones stay in it, marked
    retired, to verify and restore older backups. Prints the new public recipient."""
    from tenangdb.actions import keys

    loaded = state.load(check_recipients=False) if not key_file or state.config_path else None
    done = keys.rotate(loaded, key_file)
    click.echo(f"rotated {done.key_file}: new backups are encrypted to the new key; "
               f"{len(done.retired)} retired identit{'y' if len(done.retired) == 1 else 'ies'} kept in it to "
               "read older backups; keep a copy of the file off this machine", err=True)
    for note in done.notes:
        click.echo(f"warning: {note}", err=True)
    click.echo(done.recipient)


def add_help_and_completion(group: click.Group, complete_var: str) -> None:
    """`help [COMMAND]` and `completion SHELL`, as the original (cobra) had them."""

    @group.command("help")
    @click.argument("words", nargs=-1, metavar="[COMMAND]...")
    @click.pass_context
    def help_command(ctx: click.Context, words: tuple[str, ...]) -> None:
        """Show the help of a command (as COMMAND --help), or of the program."""
        current = ctx.find_root()
        command = current.command
        for word in words:
            sub = command.get_command(current, word) if isinstance(command, click.Group) else None
            if sub is None:
                raise click.UsageError(f"no such command: {' '.join(words)}")
            current = click.Context(sub, info_name=word, parent=current)
            command = sub
        click.echo(command.get_help(current))

    @group.command("completion")
    @click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
    @click.pass_context
    def completion(ctx: click.Context, shell: str) -> None:
        """Print the completion script for bash, zsh or fish (e.g. into /etc/bash_completion.d/)."""
        from click.shell_completion import get_completion_class

        root = ctx.find_root()
        script = get_completion_class(shell)(root.command, {}, root.info_name or group.name, complete_var)
        click.echo(script.source())


add_help_and_completion(cli, "_TENANGDB_COMPLETE")
accept_globals_after(cli)


def main() -> None:
    cli(prog_name="tenangdb")


if __name__ == "__main__":
    main()

"""The command line: parse, load configuration, call one action, map errors to exit codes."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import traceback
from pathlib import Path

import click
import platformdirs

from tenangdb import __version__, logs
from tenangdb.errors import (EXIT_BACKUP, EXIT_GENERAL, EXIT_INTERRUPTED, EXIT_VERIFY, Interrupted, request_interrupt,
                             TenangDBError)

log = logging.getLogger("tenangdb")


class State:
    def __init__(self, config: str | None, log_level: str | None, insecure: bool) -> None:
        self.config_path = config
        self.log_level = log_level
        self.insecure = insecure
        self._loaded = None

    def load(self):
        if self._loaded is None:
            from tenangdb.config.loader import load_config
            from tenangdb.logs import setup

            self._loaded = load_config(self.config_path, insecure=self.insecure)
            lg = self._loaded.settings.logging
            setup(self.log_level or lg.level, lg.format, lg.file_path, lg.file_format)
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

    with logs.console_stream(Board()) as board, board:
        yield board


def _confirm_factory(assume_yes: bool):
    def confirm(question: str) -> bool:
        if assume_yes:
            return True
        if not _interactive():
            return False
        return click.confirm(question, default=False, err=True)
    return confirm


def _on_sigterm(signum, frame):  # noqa: ARG001
    request_interrupt()
    raise Interrupted("interrupted by SIGTERM; unfinished work was removed")


def _on_sigint(signum, frame):  # noqa: ARG001
    request_interrupt()
    raise KeyboardInterrupt


class Group(click.Group):
    def invoke(self, ctx: click.Context):
        signal.signal(signal.SIGTERM, _on_sigterm)
        signal.signal(signal.SIGINT, _on_sigint)
        debug = "debug" in (ctx.params.get("log_level") or "") or os.environ.get("TENANGDB_DEBUG") == "1"
        try:
            return super().invoke(ctx)
        except click.exceptions.Exit:
            raise
        except click.ClickException:
            raise
        except TenangDBError as exc:
            if debug:
                traceback.print_exc()
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("error: interrupted; unfinished work was removed", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except Exception as exc:  # a bug: say so in one line unless asked for details
            if debug:
                traceback.print_exc()
            else:
                from tenangdb.secrets import redact
                click.echo(f"error: internal error: {redact(f'{type(exc).__name__}: {exc}')} "
                           "(run with --log-level debug for details)", err=True)
            ctx.exit(EXIT_GENERAL)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config", type=click.Path(dir_okay=False), envvar="TENANGDB_CONFIG",
              help="Configuration file (default: ./config.yaml, the user config dir, /etc/tenangdb/config.yaml).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
              default=None, help="Log level; overrides logging.level.")
@click.option("--insecure", is_flag=True, help="Accept a config file that other users can read although it holds "
              "a plaintext secret.")
@click.version_option(__version__, "--version", prog_name="tenangdb")
@click.pass_context
def cli(ctx: click.Context, config: str | None, log_level: str | None, insecure: bool) -> None:
    """TenangDB: verified, encrypted MySQL/MariaDB backups.

    \b
    Exit codes: 0 success, 1 general error, 2 configuration error,
    3 database connection error, 4 backup/restore failed (also partial),
    5 upload failed, 6 cleanup failed, 7 verification failed, 130 interrupted.
    """
    ctx.obj = State(config, log_level.lower() if log_level else None, insecure)


def _age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d"


def _split(value: str | None) -> list[str] | None:
    if not value:
        return None
    names = [part.strip() for part in value.split(",") if part.strip()]
    if not names:
        raise click.BadParameter("names no database", param_hint="--databases")
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

    loaded = state.load()
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
    from tenangdb.actions import observe

    with observe.backup_run(loaded, plan) as observer, _progress_board() as board:
        results = action.run(loaded, plan, on_result=observer.database_done, progress=board)
    ok = [r for r in results if r.ok]
    failed = [r for r in results if not r.ok]
    unverified = _verify_after_backup(loaded, ok)
    if not failed:
        log.info("all %d database backup%s succeeded", len(ok), "" if len(ok) == 1 else "s")
        if unverified:
            log.error("%d of %d new backup%s failed verification", len(unverified), len(ok),
                      "" if len(ok) == 1 else "s")
            raise SystemExit(EXIT_VERIFY)
        return
    if ok:
        log.warning("partial success: %d succeeded, %d failed", len(ok), len(failed))
    else:
        log.error("all %d database backup%s failed", len(failed), "" if len(failed) == 1 else "s")
    raise SystemExit(EXIT_BACKUP)


def _verify_after_backup(loaded, results) -> list:
    """backup.test_restore / backup.verify_backup: check each new backup; the failures."""
    cfg = loaded.settings.backup
    if not results or not (cfg.test_restore or cfg.verify_backup):
        return []
    from tenangdb.actions import observe, testrestore

    failures = []
    try:
        for result in results:
            outcome = (testrestore.test_restore(loaded, result.path) if cfg.test_restore
                       else testrestore.check_files(loaded, result.path))
            observe.verification(loaded, outcome)
            if outcome.ok:
                log.info("%s: %s passed (%s)", result.database, outcome.name, outcome.method)
            else:
                log.error("verification failed: %s", outcome.reason)
                failures.append(outcome)
    finally:
        observe.verify_done(loaded)
    return failures


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
@click.pass_obj
def verify(state: State, backup_path: str | None, all_: bool, latest: bool, sample: int | None,
           databases: str | None, test_restore: bool, target: str | None) -> None:
    """Check checksums, decryption and completeness of backups; with --test-restore, restore and check them."""
    from tenangdb.actions import observe
    from tenangdb.actions import testrestore
    from tenangdb.actions import verify as action

    chosen = [name for name, on in (("--backup-path", bool(backup_path)), ("--all", all_), ("--latest", latest),
                                    ("--sample", sample is not None)) if on]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of --backup-path, --all, --latest or --sample N")
    if databases and backup_path:
        raise click.UsageError("--databases goes with --all, --latest or --sample, not --backup-path")
    if target and not test_restore:
        raise click.UsageError("--target needs --test-restore")
    loaded = state.load()
    if backup_path:
        paths = [Path(backup_path)]
    else:
        mode = "all" if all_ else "latest" if latest else "sample"
        paths = action.select_backups(loaded, mode=mode, databases=_split(databases), sample=sample or 0)
    if not paths:
        click.echo(f"no backups to verify under {loaded.settings.backup.directory}", err=True)
        return
    failures = []
    try:
        for path in paths:
            if test_restore:
                outcome = testrestore.test_restore(loaded, path, target=target)
            else:
                outcome = testrestore.check_files(loaded, path)
            observe.verification(loaded, outcome)
            if outcome.ok:
                click.echo(_verified_line(outcome))
                for note in outcome.notes:
                    log.warning("%s: %s", outcome.name, note)
            else:
                failures.append(outcome)
                if len(paths) > 1:
                    click.echo(f"FAILED {outcome.reason}")
    finally:
        observe.verify_done(loaded)
    if not failures:
        return
    if len(paths) == 1:
        click.echo(f"error: {failures[0].reason}", err=True)
    else:
        click.echo(f"error: {len(failures)} of {len(paths)} backups failed verification", err=True)
    raise SystemExit(EXIT_VERIFY)


def _verified_line(outcome) -> str:
    if not outcome.method.startswith("test-restore"):
        return f"OK {outcome.path}"
    return (f"OK {outcome.path} ({outcome.method}: restored {outcome.restored_rows} rows in "
            f"{outcome.restore_seconds:.1f}s, {outcome.tables_checked} tables matched their recorded checksums, "
            f"{outcome.duration:.1f}s in all)")


@cli.command()
@click.option("--backup-path", "-b", required=True, help="Backup folder to restore.")
@click.option("--target-database", "--database", "-d", "target", required=True,
              help="Database to restore into (created if missing).")
@click.option("--yes", "-y", is_flag=True, help="Restore into a non-empty database without asking.")
@click.pass_obj
def restore(state: State, backup_path: str, target: str, yes: bool) -> None:
    """Verify a backup, then restore it into a database."""
    from tenangdb.actions import observe
    from tenangdb.actions import restore as action

    loaded = state.load()
    with observe.restore_run(loaded, backup_path):
        action.run(loaded, backup_path, target, confirm=_confirm_factory(yes))


@cli.command()
@click.option("--listen", help="Address to listen on; overrides metrics.listen (default 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port; overrides metrics.port (default 9090).")
@click.pass_obj
def exporter(state: State, listen: str | None, port: int | None) -> None:
    """Serve the metrics of past runs to Prometheus (/metrics, /healthz) until stopped."""
    from tenangdb.actions import exporter as action

    action.run(state.load(), listen, port)


@cli.command("config")
@click.pass_obj
def show_config(state: State) -> None:
    """Show the effective configuration and where each value came from (secrets redacted)."""
    from tenangdb.config.loader import effective_items

    loaded = state.load()
    if loaded.path:
        click.echo(f"# config file: {loaded.path.resolve()}")
    else:
        click.echo("# no config file found; searched: " + ", ".join(str(p) for p in loaded.searched))
    for key, value, source in effective_items(loaded):
        click.echo(f"{key} = {value}    # {source}")


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


def main() -> None:
    cli(prog_name="tenangdb")


if __name__ == "__main__":
    main()

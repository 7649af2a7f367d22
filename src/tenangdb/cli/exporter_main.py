"""`tenangdb-exporter`: the original TenangDB's exporter program, with its flags and defaults.

Its deployments (systemd unit, Kubernetes Deployment, compose file) run
`tenangdb-exporter [--config FILE] [--port N] [--metrics-file FILE]`; this serves the same
endpoints from the same state file as `tenangdb exporter`. Where the two differ it is because
the original's deployments rely on it: all interfaces unless metrics.listen says otherwise,
port 9090 unless --port says otherwise (the original never read metrics.port here), and a
config that was only discovered (not named) and cannot be loaded is reported, not fatal.
"""

from __future__ import annotations

import logging
import platform

import click

from tenangdb import __version__
from tenangdb.cli.main import (LOG_LEVEL_HELP, LOG_LEVEL_TYPE, Group, State, accept_globals_after,
                               add_help_and_completion, log_level_name)
from tenangdb.errors import ConfigError

log = logging.getLogger("tenangdb.exporter")

ORIGINAL_PORT = 9090
ALL_INTERFACES = "0.0.0.0"


def _load(state: State):
    if state.config_path:
        return state.load()
    try:
        return state.load()
    except ConfigError as exc:
        from tenangdb.config.loader import LoadedConfig, search_path
        from tenangdb.config.schema import Settings
        from tenangdb.logs import setup

        setup(state.log_level or "info")
        log.warning("%s; serving with the default settings (name a config with --config to make this an "
                    "error)", exc)
        return LoadedConfig(settings=Settings(), path=None, searched=search_path())


@click.group(cls=Group, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", type=click.Path(dir_okay=False), envvar="TENANGDB_CONFIG",
              help="Configuration file (default: discovered as by tenangdb; one that cannot be loaded is "
              "then only reported).")
@click.option("--log-level", type=LOG_LEVEL_TYPE, metavar="LEVEL", default=None, help=LOG_LEVEL_HELP)
@click.option("--insecure", is_flag=True, help="Accept a config file that other users can read although it holds "
              "a plaintext secret.")
@click.option("--port", type=click.IntRange(1, 65535), help=f"Port (default {ORIGINAL_PORT}; metrics.port is "
              "not used here, as in the original).")
@click.option("--listen", help="Address (default metrics.listen when the config sets it, else all interfaces).")
@click.option("--metrics-file", type=click.Path(dir_okay=False), help="Metrics state file (default "
              "metrics.storage_path, else <state dir>/metrics.json).")
@click.version_option(__version__, "--version", prog_name="tenangdb-exporter",
                      message="TenangDB Exporter version %(version)s")
@click.pass_context
def exporter_cli(ctx: click.Context, config: str | None, log_level: str | None, insecure: bool, port: int | None,
                 listen: str | None, metrics_file: str | None) -> None:
    """Serve TenangDB's metrics to Prometheus (/metrics, /health, /ready, /healthz) until stopped.

    The same server as `tenangdb exporter`, with the original tenangdb-exporter's flags and
    defaults."""
    ctx.obj = State(config, log_level_name(log_level), insecure)
    if ctx.invoked_subcommand is not None:
        return
    from tenangdb.actions import exporter as action

    state: State = ctx.obj
    state.reap = False  # serving metrics changes nothing on disk
    loaded = _load(state)
    cfg = loaded.settings.metrics
    if listen is None:
        listen = cfg.listen if loaded.source_of("metrics.listen") != "default" else ALL_INTERFACES
    if port is None:
        port = ORIGINAL_PORT
        if loaded.source_of("metrics.port") != "default" and cfg.port != ORIGINAL_PORT:
            log.warning("metrics.port %d is not used by tenangdb-exporter (the original did not use it either: "
                        "it was the port of `tenangdb backup`'s own short-lived server); listening on %d. "
                        "Pass --port %d, or run `tenangdb exporter`, which uses metrics.port",
                        cfg.port, port, cfg.port)
    action.run(loaded, listen, port, metrics_file)


@exporter_cli.command()
def version() -> None:
    """Print the version."""
    click.echo(f"TenangDB Exporter version {__version__}")
    click.echo(f"Python version: {platform.python_version()}")
    click.echo(f"Platform: {platform.system().lower()}/{platform.machine()}")


add_help_and_completion(exporter_cli, "_TENANGDB_EXPORTER_COMPLETE")
accept_globals_after(exporter_cli)


def main() -> None:
    exporter_cli(prog_name="tenangdb-exporter")


if __name__ == "__main__":
    main()

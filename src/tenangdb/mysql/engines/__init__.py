"""The registry of engines. Adding an engine is adding its module and one line here (and its
name to `backup.engine`'s choices in config/schema.py)."""

from __future__ import annotations

from tenangdb.errors import VerifyFailed
from tenangdb.mysql.engines.base import BackupJob, DumpInput, Dumped, Engine
from tenangdb.mysql.engines.parallel import Parallel
from tenangdb.mysql.engines.physical import Physical
from tenangdb.mysql.engines.streaming import Streaming
from tenangdb.repository.manifest import Manifest

# Order matters for `backup.engine: auto`: the first engine that says it is chosen by auto
# wins, the last one is the default.
ENGINES: dict[str, type[Engine]] = {engine.name: engine for engine in (Parallel, Physical, Streaming)}
DEFAULT = Streaming.name

__all__ = ["BackupJob", "DumpInput", "Dumped", "Engine", "ENGINES", "by_name", "choose", "for_legacy", "for_manifest", "sql_client"]


def by_name(name: str, dcfg) -> Engine:
    return ENGINES[name](dcfg)


def choose(cfg) -> Engine:
    """backup.engine resolved against this machine. An engine named explicitly is checked
    (ToolMissing, ConfigError) so that a missing tool stops the run before any database."""
    wanted = cfg.backup.engine
    if wanted == "auto":
        return by_name(next((name for name, engine in ENGINES.items() if engine.chosen_by_auto(cfg.database)),
                            DEFAULT), cfg.database)
    engine = by_name(wanted, cfg.database)
    engine.check_chosen()
    return engine


def sql_client(dcfg) -> Engine:
    """The engine whose load is a SQL client fed from Python: what a binary-log replay writes
    through (one connection for every file, so temporary tables can span them)."""
    return next(engine for engine in ENGINES.values() if engine.loads_by_client)(dcfg)


def for_legacy(form: str, dcfg) -> Engine:
    """The engine that loads a backup of the original TenangDB with this content (legacy.SQL, FOLDER)."""
    return next(engine for engine in ENGINES.values() if engine.legacy_form == form)(dcfg)


def for_manifest(manifest: Manifest, dcfg) -> Engine:
    """The engine that made a backup, which is the one that checks and loads it."""
    name = manifest.engine.name
    if name not in ENGINES:
        raise VerifyFailed(f"the backup was made by the {name!r} engine, which this version cannot read")
    return by_name(name, dcfg)

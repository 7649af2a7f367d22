"""The manifest: the contract of a backup. Written last; a folder without one is not a backup."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tenangdb.errors import VerifyFailed

MANIFEST = "manifest.json"
FORMAT = 1
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
COMPRESSIONS = ("zstd", "gzip", "xz", "none")
REQUIRED = ("format", "tool", "database", "engine", "started_at", "finished_at", "compression",
            "encryption", "files", "objects")


def dumps(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def load(folder: Path) -> dict[str, Any]:
    """Read and check the manifest's shape; VerifyFailed names what is wrong."""
    path = folder / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise VerifyFailed(f"{folder}: no {MANIFEST}, so this is not a complete backup") from None
    except PermissionError:
        raise VerifyFailed(f"{path}: not readable by this user") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VerifyFailed(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise VerifyFailed(f"{path}: not a manifest object")
    missing = [key for key in REQUIRED if key not in data]
    if missing:
        raise VerifyFailed(f"{path}: incomplete manifest, missing {', '.join(missing)}")
    if data["format"] != FORMAT:
        raise VerifyFailed(f"{path}: manifest format {data['format']!r} is not supported by this version")
    if not isinstance(data["compression"], dict) or data["compression"].get("format") not in COMPRESSIONS:
        raise VerifyFailed(f"{path}: the manifest names no known compression")
    if not isinstance(data["encryption"], dict):
        raise VerifyFailed(f"{path}: the manifest's encryption entry is malformed")
    files = data["files"]
    if not isinstance(files, list) or not files:
        raise VerifyFailed(f"{path}: the manifest lists no files")
    names: set[str] = set()
    for entry in files:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise VerifyFailed(f"{path}: a file entry is malformed")
        name = entry["name"]
        for key in ("plain_size", "stored_size"):
            if not isinstance(entry.get(key), int) or isinstance(entry.get(key), bool) or entry[key] < 0:
                raise VerifyFailed(f"{path}: file entry {name!r} has no valid {key}")
        if not (_HEX64.match(str(entry.get("plain_sha256"))) and _HEX64.match(str(entry.get("stored_sha256")))):
            raise VerifyFailed(f"{path}: file entry {name!r} has a missing or malformed SHA-256")
        if "/" in name or "\x00" in name or name in ("", ".", "..") or name == MANIFEST:
            raise VerifyFailed(f"{path}: file entry {name!r} is not a plain file name")
        plain_name = entry.get("plain_name")
        if plain_name is not None and (not isinstance(plain_name, str) or "/" in plain_name or "\x00" in plain_name
                                       or plain_name in ("", ".", "..")):
            raise VerifyFailed(f"{path}: file entry {name!r} has an unusable plain_name")
        if name in names:
            raise VerifyFailed(f"{path}: file {name!r} is listed twice")
        names.add(name)
    entries = data.get("losses", [])
    if not isinstance(entries, list) or not all(
            isinstance(e, dict) and all(isinstance(e.get(k), str) for k in LOSS_KEYS) for e in entries):
        raise VerifyFailed(f"{path}: the manifest's losses entry is malformed")
    return data


LOSS_KEYS = ("object", "lost", "why")


def losses(manifest: dict[str, Any]) -> list[dict[str, str]]:
    """What the backup does not hold exactly, as recorded ({object, lost, why} each); a manifest
    written before losses were recorded has none (such a backup was refused instead)."""
    return [{k: str(e[k]) for k in LOSS_KEYS} for e in manifest.get("losses") or []
            if isinstance(e, dict) and all(k in e for k in LOSS_KEYS)]


def describe_loss(loss: dict[str, str]) -> str:
    """One recorded loss as the line an operator reads."""
    return f"{loss['object']}: {loss['lost']} ({loss['why']})"

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
    files = data["files"]
    if not isinstance(files, list) or not files:
        raise VerifyFailed(f"{path}: the manifest lists no files")
    for entry in files:
        for key in ("name", "plain_size", "plain_sha256", "stored_size", "stored_sha256"):
            if key not in entry:
                raise VerifyFailed(f"{path}: file entry {entry.get('name', '?')!r} lacks {key}")
        if not (_HEX64.match(str(entry["plain_sha256"])) and _HEX64.match(str(entry["stored_sha256"]))):
            raise VerifyFailed(f"{path}: file entry {entry['name']!r} has a malformed SHA-256")
        name = str(entry["name"])
        if "/" in name or name in ("", ".", "..") or name == MANIFEST:
            raise VerifyFailed(f"{path}: file entry {name!r} is not a plain file name")
    return data

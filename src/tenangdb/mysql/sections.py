"""Restoring some tables of a logical backup: which objects come with them, and the filter that
passes on only their sections of a mysqldump/mariadb-dump stream.

A dump of one database is a header of session settings (character set, time zone,
FOREIGN_KEY_CHECKS, SQL_MODE...), then one section per object, each opened by a comment block:

    --
    -- Table structure for table `t`          (DROP TABLE, CREATE TABLE)
    -- Dumping data for table `t`             (the rows, then the table's triggers)
    -- Sequence structure for `s`
    -- Temporary table structure for view `v` (a stand-in, so that views may name each other)
    -- Dumping events for database 'db'
    -- Dumping routines for database 'db'
    -- Final view structure for view `v`
    --

and a footer that puts the session settings back (`SET X=@OLD_X` lines) and ends with the
completion comment. Header and footer always pass; a section passes when its object is chosen.
Row data never holds a raw newline, and the bodies of triggers, routines and events (which
may) sit between `DELIMITER ;;` and `DELIMITER ;`, where no comment block is taken for a
section's start.

Objects are named in those comments as the dump tool quotes them: in backticks, a backtick
doubled.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from tenangdb.errors import InvalidInput

TABLE, VIEW, SEQUENCE = "table", "view", "sequence"


@dataclass
class Selection:
    """The objects a restore of some tables loads, and what of the backup it leaves out."""
    tables: list[str]
    views: list[str]
    sequences: list[str]
    triggers: list[str]  # those of the chosen tables: they come with them
    routines_left: list[str] = field(default_factory=list)
    events_left: list[str] = field(default_factory=list)
    triggers_left: list[str] = field(default_factory=list)

    @property
    def names(self) -> set[str]:
        """The names whose sections (or files) are loaded."""
        return {*self.tables, *self.views, *self.sequences}

    def includes(self, label: str) -> bool:
        """Whether an object named as "kind name" (e.g. "trigger trg_a") is among those loaded."""
        kind, _, name = label.partition(" ")
        return name in {TABLE: self.tables, VIEW: self.views, SEQUENCE: self.sequences,
                        "trigger": self.triggers}.get(kind, ())

    def objects(self) -> dict:
        """The chosen part of a manifest's inventory, in its shape (mysql.inventory.missing_objects)."""
        return {"tables": [{"name": name} for name in self.tables], "views": self.views,
                "sequences": self.sequences, "routines": [],
                "triggers": [{"name": name} for name in self.triggers], "events": []}

    def describe(self) -> str:
        chosen = [f"{kind} {name!r}" for kind, names in ((TABLE, self.tables), (VIEW, self.views),
                                                         (SEQUENCE, self.sequences)) for name in names]
        line = ", ".join(chosen)
        if self.triggers:
            line += f" (with trigger{'s' if len(self.triggers) > 1 else ''} {', '.join(self.triggers)})"
        return line

    def left_out(self) -> str | None:
        """One line naming what of the backup a restore of these tables does not load, or None."""
        left = (("routines", self.routines_left), ("events", self.events_left),
                ("triggers of other tables", self.triggers_left))
        return "; ".join(f"{what} ({', '.join(names)})" for what, names in left if names) or None


def select(objects: dict, wanted: list[str]) -> Selection:
    """The objects named in `wanted` among a manifest's inventory `objects` (tables, views,
    sequences), with the triggers of the chosen tables. InvalidInput, naming them, for names
    the backup does not hold."""
    tables = [t.get("name") for t in objects.get("tables") or []]
    views = list(objects.get("views") or [])
    sequences = list(objects.get("sequences") or [])
    wanted = list(dict.fromkeys(wanted))
    if unknown := [name for name in wanted if name not in {*tables, *views, *sequences}]:
        raise InvalidInput(f"the backup holds no table, view or sequence named "
                           f"{', '.join(repr(n) for n in unknown)} (it holds {len(tables)} tables, "
                           f"{len(views)} views, {len(sequences)} sequences: see `tenangdb list --json`)")
    chosen_tables = [name for name in tables if name in wanted]
    triggers = objects.get("triggers") or []
    return Selection(
        tables=chosen_tables,
        views=[name for name in views if name in wanted],
        sequences=[name for name in sequences if name in wanted],
        triggers=[t["name"] for t in triggers if t.get("table") in chosen_tables],
        routines_left=[f"{r.get('type')} {r.get('name')}" for r in objects.get("routines") or []],
        events_left=list(objects.get("events") or []),
        triggers_left=[t["name"] for t in triggers if t.get("table") not in chosen_tables],
    )


# The events the filter acts on, each at the start of a line: a section's comment block, a
# DELIMITER line, and the footer's first line. Matched after the newline that ends the
# previous line (a lookahead), so a match never consumes the next one's newline.
_EVENT = re.compile(rb"\n(?=--\n-- ([^\n]*)\n|DELIMITER (\S+)[ \t]*\n|/\*!\d+ SET \w+=@OLD_\w+ \*/;\n)")
_SECTION = re.compile(r"^(?:(Table structure for table|Dumping data for table|Sequence structure for)"
                      r"|(Temporary table structure for view|Final view structure for view)) `((?:[^`]|``)*)`$")
_DATABASE_SECTION = re.compile(r"^Dumping (events|routines) for database ")


def section_of(comment: str) -> tuple[str, str | None] | None:
    """What a section's comment line (without `-- `) opens: (kind, object name), (kind, None)
    for the events or routines of the database, None for a comment that opens no section
    (e.g. the binary-log position in the header)."""
    if match := _SECTION.match(comment):
        name = match.group(3).replace("``", "`")
        if match.group(2):
            return VIEW, name
        return (SEQUENCE if match.group(1).startswith("Sequence") else TABLE), name
    if match := _DATABASE_SECTION.match(comment):
        return match.group(1), None
    return None


class SectionFilter:
    """Forwards the header, the footer and the sections of the objects named in `names` of a
    plain dump stream, dropping the rest as it goes (nothing is held beyond a few KiB).

    `write` takes the stream in pieces of any size; `close` forwards what is left. `sections`
    records where each forwarded section starts in the forwarded stream (its line number), so
    that a loader's "at line N" can be told as the object it was loading.
    """

    CONTEXT = 4096  # longer than any comment block or DELIMITER line
    BATCH = 1 << 20

    def __init__(self, names: set[str], forward: Callable[[bytes], None]) -> None:
        self._names = set(names)
        self._forward = forward
        self._carry = b"\n"  # the stream's first line follows a (virtual) newline...
        self._skip = 1  # ...which is not forwarded
        self._keep = True  # the header passes
        self._in_footer = False
        self._in_body = False  # between DELIMITER ;; and DELIMITER ;
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._line = 1  # the forwarded stream's line number at its end
        self._footer_line: int | None = None
        self.sections: list[tuple[int, str, str]] = []  # (first line, kind, name) of each forwarded section
        self.found: set[str] = set()  # chosen names whose sections were seen

    def write(self, data: bytes) -> None:
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size >= self.BATCH:
            self._process()

    def close(self) -> None:
        self._process(final=True)

    @property
    def missing(self) -> list[str]:
        """Chosen names the stream held no section for (sorted)."""
        return sorted(self._names - self.found)

    def where(self, line: int) -> tuple[str, str] | None:
        """The (kind, name) of the forwarded section holding line `line`, None in header or footer."""
        found = None
        for first, kind, name in self.sections:
            if first > line:
                break
            found = (kind, name)
        if self._footer_line is not None and line >= self._footer_line:
            return None
        return found

    def _emit(self, data) -> None:
        if self._skip and data:
            data, self._skip = data[1:], 0
        if data and self._keep:
            data = bytes(data)
            self._line += data.count(b"\n")
            self._forward(data)

    def _process(self, final: bool = False) -> None:
        buf = self._carry + b"".join(self._pending)
        self._pending, self._pending_size = [], 0
        view = memoryview(buf)
        pos = 0
        if not self._in_footer:
            for match in _EVENT.finditer(buf):
                self._emit(view[pos:match.start() + 1])  # the newline ends the line before
                pos = match.start() + 1
                self._on_event(match)
                if self._in_footer:
                    break
        cut = len(buf) if final or self._in_footer else max(len(buf) - self.CONTEXT, pos)
        self._emit(view[pos:cut])
        self._carry = buf[cut:]
        if final:
            self._carry = b""

    def _on_event(self, match: re.Match) -> None:
        comment, delimiter = match.group(1), match.group(2)
        if delimiter is not None:
            self._in_body = delimiter != b";"
            return
        if self._in_body:
            return
        if comment is None:  # the footer's first line: the rest passes
            self._in_footer, self._keep = True, True
            self._footer_line = self._line
            return
        opened = section_of(comment.decode("utf-8", errors="replace"))
        if opened is None:
            return  # a comment inside the header or a section: it stays where it is
        kind, name = opened
        self._keep = name is not None and name in self._names
        if self._keep:
            self.found.add(name)
            self.sections.append((self._line, kind, name))


_AT_LINE = re.compile(r"\bat line (\d+)\b")


def failed_section(filtered: SectionFilter, error: str) -> str | None:
    """From a mariadb client's error ("ERROR 1146 (42S02) at line 45: ..."), the object whose
    section it was loading, as words for the message; None when it cannot be told."""
    if not (match := _AT_LINE.search(error)) or (where := filtered.where(int(match.group(1)))) is None:
        return None
    kind, name = where
    if kind == VIEW:
        return (f"while creating view {name!r}: a view needs the tables and views it reads, restored with it "
                "(--tables) or already in the target")
    return f"while loading {kind} {name!r}"

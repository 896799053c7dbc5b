"""Loading databases into one cantools database: the bundled ones first, the user's after (theirs win).

Every format cantools reads, by extension: DBC (``.dbc``), KCD (``.kcd``), SYM (``.sym``) and AUTOSAR/ARXML
(``.arxml``). ``opendbc:NAME`` is one of opendbc's files by name (the ``opendbc`` extra), its generated ones
included (``opendbc:honda_civic_touring_2016_can_generated``, put together by opendbc's own generator from its
sources and includes). A DBC file that cantools' strict loader refuses gets one tolerant pass, the way
opendbc's own parser reads its files: see :func:`tolerant_dbc`; what was forgiven is logged as one WARNING.
"""

from __future__ import annotations

import difflib
import logging
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import cantools

from firmware_bridge.errors import InputError

log = logging.getLogger(__name__)

#: DBC files loaded for every car: OBD-II responses and requests. A car's own files come from its folder.
BUNDLED_DBCS = ("obd2.dbc",)
#: cantools' loaders by extension.
FORMATS = {".dbc": "dbc", ".kcd": "kcd", ".sym": "sym", ".arxml": "arxml"}
OPENDBC_PREFIX = "opendbc:"
EXTENDED_BIT = 0x80000000  # a DBC's mark of a 29-bit frame ID
STANDARD_MAX_ID = 0x7FF


def bundled_dbc_path(name: str) -> Path:
    """Path of a DBC file shipped with the package (the repository's ``dbc/`` folder)."""
    return Path(str(resources.files("firmware_bridge.dbc") / name))


def _resolve(path: str | Path) -> Path:
    """A file path, or the name of a bundled DBC (``obd2.dbc``)."""
    path = Path(path)
    if not path.is_file() and path.parent == Path(".") and bundled_dbc_path(path.name).is_file():
        return bundled_dbc_path(path.name)
    return path


@dataclass(frozen=True)
class Source:
    """One database's text, its cantools format, and the name it is reported under."""

    name: str
    text: str
    fmt: str


def _generator():
    try:
        from opendbc.dbc.generator import generator
    except ImportError:
        raise InputError("opendbc: not installed: pip install opendbc") from None
    return generator


def opendbc_names() -> dict[str, Path | None]:
    """opendbc's databases by name: its top-level files (path), and those its generator builds (None)."""
    generator = _generator()
    folder = Path(generator.generator_path).parent
    names: dict[str, Path | None] = {p.stem: p for p in sorted(folder.glob("*.dbc"))}
    for name in sorted(generator.generate_all()):
        names.setdefault(name, None)
    return names


def _opendbc_source(spec: str) -> Source:
    name = spec[len(OPENDBC_PREFIX):].removesuffix(".dbc")
    names = opendbc_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise InputError(f"{spec}: no such opendbc database{hint}")
    path = names[name]
    if path is not None:
        return Source(spec, path.read_text(encoding="utf-8", errors="replace"), "dbc")
    generated = _generator().generate_all()  # opendbc's own generator: sources with their includes joined
    if name not in generated:
        raise InputError(f"{spec}: opendbc's generator did not produce it")
    return Source(spec, generated[name], "dbc")


def _file_source(spec: str | Path) -> Source:
    path = _resolve(spec)
    if not path.is_file():
        raise InputError(f"{path}: database file not found")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{path}: unknown database format {path.suffix or '(no extension)'!r}; "
                         f"expected one of {', '.join(FORMATS)} or opendbc:NAME")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")  # what Vector's tools write
    return Source(str(path), text, fmt)


def source(spec: str | Path) -> Source:
    """A database named on the command line or in a profile: a file, a bundled name, or ``opendbc:NAME``."""
    if str(spec).startswith(OPENDBC_PREFIX):
        return _opendbc_source(str(spec))
    return _file_source(spec)


# -- the tolerant pass ----------------------------------------------------------------------------------------
@dataclass
class Forgiven:
    """What the tolerant pass changed in one file, for the one-line note."""

    notes: list[str] = field(default_factory=list)

    def add(self, count: int, what: str) -> None:
        if count:
            self.notes.append(f"{count} {what}")


_NUMBER_AFTER = re.compile(
    r'^([ \t]*(?:BO_|VAL_|CM_[ \t]+BO_|CM_[ \t]+SG_|SG_MUL_VAL_|BO_TX_BU_|SIG_VALTYPE_|SIG_GROUP_|'
    r'BA_[ \t]+"[^"]*"[ \t]+(?:BO_|SG_))[ \t]+)(\d+)\b', re.MULTILINE)
_COMMENT = re.compile(r'^CM_[^"\n]*"(?:[^"\\]|\\.)*"[ \t]*;?', re.MULTILINE)
_GOOD_COMMENT = re.compile(r'CM_[ \t]+(?:(?:BU_|EV_)[ \t]+\w+[ \t]+|BO_[ \t]+\d+[ \t]+|SG_[ \t]+\d+[ \t]+\w+[ \t]+)?'
                           r'"(?:[^"\\]|\\.)*"[ \t]*;')
_BARE_FRACTION = re.compile(r'(?<=[(,\[|:\s-])\.(?=\d)')
_DIGIT_NAME = re.compile(r'^([ \t]*(?:BO_[ \t]+\d+|SG_))[ \t]+(\d\w*)', re.MULTILINE)
_UNUSED_VAL = re.compile(r"VAL_ (\d+) (\w+)")
_MESSAGE_BLOCK = re.compile(r"^BO_[ \t]+(\d+)[^\n]*\n(?:[ \t]+SG_[^\n]*\n)*", re.MULTILINE)
_UNENDED_VALUES = re.compile(r'^([ \t]*VAL_[ \t]+\d+[ \t]+\w+(?:[ \t]+-?\d+[ \t]+"[^"\n]*")+)[ \t]*$', re.MULTILINE)
CAN_ID_MAX = 0x1FFFFFFF


def tolerant_dbc(text: str, forgiven: Forgiven) -> str:
    """A DBC as opendbc reads it, in the words cantools accepts: frame IDs above 0x7FF without the extended
    bit are 29-bit IDs (opendbc's reading), messages whose ID no CAN frame can carry left out, malformed
    comments dropped (they never change a value), value tables given their closing ``;``, fractions written
    ``.25`` given their zero, names starting with a digit prefixed with ``_``."""
    text, impossible = _MESSAGE_BLOCK.subn(
        lambda m: "" if CAN_ID_MAX < int(m.group(1)) < EXTENDED_BIT else m.group(0), text)
    impossible -= len(_MESSAGE_BLOCK.findall(text))
    forgiven.add(impossible, "messages with IDs wider than 29 bits left out (no CAN frame carries them)")
    ids = {int(m.group(2)) for m in _NUMBER_AFTER.finditer(text) if m.group(1).strip() == "BO_"
           and STANDARD_MAX_ID < int(m.group(2)) < EXTENDED_BIT}
    if ids:
        text = _NUMBER_AFTER.sub(lambda m: m.group(1) + (str(int(m.group(2)) | EXTENDED_BIT)
                                                         if int(m.group(2)) in ids else m.group(2)), text)
    forgiven.add(len(ids), "frame IDs above 0x7FF read as 29-bit")
    bad_comments = [m.group(0) for m in _COMMENT.finditer(text) if not _GOOD_COMMENT.fullmatch(m.group(0))]
    if bad_comments:
        text = _COMMENT.sub(lambda m: m.group(0) if _GOOD_COMMENT.fullmatch(m.group(0)) else "", text)
    forgiven.add(len(bad_comments), "malformed comments dropped")
    text, unended = _UNENDED_VALUES.subn(r"\1 ;", text)
    forgiven.add(unended, "value tables without their closing ';'")
    text, fractions = _BARE_FRACTION.subn("0.", text)
    forgiven.add(fractions, "numbers written without their leading 0")
    names = {m.group(2) for m in _DIGIT_NAME.finditer(text)}
    for name in names:
        text = re.sub(rf"(?<![\w.]){re.escape(name)}\b", "_" + name, text)
    forgiven.add(len(names), f"names starting with a digit prefixed with _ ({', '.join(sorted(names))})"
                 if names else "")
    return text


def _drop_unused_values(text: str, error: str, forgiven: Forgiven) -> str | None:
    """The value tables cantools names as unused (signals that do not exist) removed, or None."""
    unused = _UNUSED_VAL.findall(error)
    if "unused VAL_" not in error or not unused:
        return None
    for frame_id, signal in unused:
        text = re.sub(rf'^[ \t]*VAL_[ \t]+{frame_id}[ \t]+{re.escape(signal)}[ \t][^;]*;', "", text,
                      flags=re.MULTILINE)
    forgiven.add(len(unused), "unused value tables ignored")
    return text


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _load(text: str, fmt: str, strict: bool) -> cantools.database.Database:
    return cantools.database.load_string(text, database_format=fmt, strict=strict)


def parse(src: Source) -> tuple[cantools.database.Database, list[str]]:
    """The source as a cantools database, and what was forgiven (empty when cantools took it as it is)."""
    try:
        return _load(src.text, src.fmt, strict=True), []
    except Exception:  # noqa: BLE001 - cantools raises several parser error types
        pass
    forgiven = Forgiven()
    text = tolerant_dbc(src.text, forgiven) if src.fmt == "dbc" else src.text
    for _ in range(3):  # cantools names every unused value table at once: one retry is enough
        try:
            try:
                return _load(text, src.fmt, strict=True), forgiven.notes
            except Exception as exc:  # noqa: BLE001
                db = _load(text, src.fmt, strict=False)
                forgiven.notes.append(f"cantools' strict checks relaxed ({_first_line(exc)})")
                return db, forgiven.notes
        except Exception as exc:  # noqa: BLE001
            fixed = _drop_unused_values(text, str(exc), forgiven) if src.fmt == "dbc" else None
            if fixed is None:
                raise InputError(f"{src.name}: not a valid {src.fmt.upper()} file: {_first_line(exc)}") from None
            text = fixed
    raise InputError(f"{src.name}: not a valid {src.fmt.upper()} file")


def load_database(user_dbcs: list[str | Path] = (), bundled: bool = True) -> cantools.database.Database:
    """One database holding every message; a later file's frame ID overrides an earlier one's. What a tolerant
    pass forgave is one WARNING per file."""
    db = cantools.database.Database(strict=False)  # each file was checked as strictly as it allows
    specs = [bundled_dbc_path(name) for name in BUNDLED_DBCS] if bundled else []
    for spec in [*specs, *user_dbcs]:
        src = source(spec)
        parsed, forgiven = parse(src)
        if forgiven:
            log.warning("%s: loaded leniently, as opendbc reads it: %s", src.name, "; ".join(forgiven))
        db.messages.extend(parsed.messages)  # as cantools' own add_*_string does
    db.refresh()
    return db

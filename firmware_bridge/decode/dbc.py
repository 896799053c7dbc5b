"""Loading DBC files into one cantools database: the bundled ones first, the user's after (theirs win)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import cantools

from firmware_bridge.errors import InputError

#: DBC files loaded for every car: OBD-II responses and requests. A car's own files come from its folder.
BUNDLED_DBCS = ("obd2.dbc",)


def bundled_dbc_path(name: str) -> Path:
    """Path of a DBC file shipped with the package (the repository's ``dbc/`` folder)."""
    return Path(str(resources.files("firmware_bridge.dbc") / name))


def _resolve(path: str | Path) -> Path:
    """A file path, or the name of a bundled DBC (``obd2.dbc``)."""
    path = Path(path)
    if not path.is_file() and path.parent == Path(".") and bundled_dbc_path(path.name).is_file():
        return bundled_dbc_path(path.name)
    return path


def load_database(user_dbcs: list[str | Path] = (), bundled: bool = True) -> cantools.database.Database:
    """One database holding every message; a later file's frame ID overrides an earlier one's."""
    db = cantools.database.Database()
    paths = [bundled_dbc_path(name) for name in BUNDLED_DBCS] if bundled else []
    paths += [_resolve(p) for p in user_dbcs]
    for path in paths:
        if not path.is_file():
            raise InputError(f"{path}: DBC file not found")
        try:
            db.add_dbc_file(str(path))
        except Exception as exc:  # cantools raises several parser error types
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"{path}: not a valid DBC file: {detail}") from None
    return db

"""The node's files on disk are its operator's alone: 0600 files in 0700 directories.

The database holds TLP:RED content, the home holds the server secret and the node key:
nothing the node writes may be readable by another local user, whatever the umask was or
whatever existed before. :func:`tighten_home` brings an existing home to that state (``exchange
init`` runs it and says what it changed; ``exchange serve`` runs it and logs what it
changed); :func:`create_private_file` creates a new file that way from the start.

SQLite creates its ``-wal`` and ``-shm`` files with the permissions of the database file,
so a database file created 0600 keeps its companions private too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from exchange.config import SECRET_FILE, Settings
from exchange.errors import ConfigError
from exchange.node.nodekey import NODE_KEY_FILE, NODE_PASSPHRASE_FILE

log = logging.getLogger(__name__)

__all__ = ["Tightened", "create_private_file", "sqlite_database_path", "tighten_home"]

#: Files the node writes in its home, besides the database and the spool.
_NODE_FILES = (SECRET_FILE, NODE_KEY_FILE, NODE_PASSPHRASE_FILE, "exchange.toml")
#: The companions SQLite and the writer lock put beside a database file.
_DATABASE_SUFFIXES = ("", "-wal", "-shm", "-journal", ".writer-lock")


@dataclass(frozen=True, slots=True)
class Tightened:
    """One path whose permissions were narrowed."""

    path: Path
    old_mode: int
    new_mode: int

    def __str__(self) -> str:
        return f"{self.path}: {self.old_mode:04o} -> {self.new_mode:04o}"


def sqlite_database_path(settings: Settings) -> Path | None:
    """The SQLite database file of ``settings``, or None for PostgreSQL or memory."""
    url = settings.effective_database_url
    if not url.startswith("sqlite"):
        return None
    path = url.split(":///", 1)[-1] if ":///" in url else ""
    return Path(path) if path and path != ":memory:" else None


def create_private_file(path: Path) -> bool:
    """Create ``path`` empty with mode 0600 unless it exists. True when it was created.

    Raises:
        ConfigError: The file cannot be created.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    except OSError as e:
        raise ConfigError(f"cannot create {path}: {e.strerror}") from e
    os.close(fd)
    return True


def _narrow(path: Path, wanted: int, out: list[Tightened]) -> None:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    except OSError as e:
        raise ConfigError(f"cannot read the permissions of {path}: {e.strerror}") from e
    if stat.S_ISLNK(st.st_mode):
        return  # the operator's own arrangement; its target is checked where it is named
    mode = stat.S_IMODE(st.st_mode)
    if mode & ~wanted:
        try:
            os.chmod(path, mode & wanted)
        except OSError as e:
            raise ConfigError(f"cannot narrow the permissions of {path}: {e.strerror}") from e
        out.append(Tightened(path, mode, mode & wanted))


def tighten_home(settings: Settings) -> list[Tightened]:
    """Make the node's home 0700 and every file the node writes 0600 (group and others
    lose all access; the owner's bits are kept).

    Covers the home directory, the server secret, the node key and its passphrase file,
    ``exchange.toml``, the SQLite database with its ``-wal``/``-shm`` files (also when the
    database lives outside the home), and the audit spool directory with its files.

    Returns:
        What was changed, empty when everything already was private.

    Raises:
        ConfigError: A permission cannot be read or changed.
    """
    out: list[Tightened] = []
    home = settings.home
    _narrow(home, 0o700, out)
    for name in _NODE_FILES:
        _narrow(home / name, 0o600, out)
    database = sqlite_database_path(settings)
    if database is not None:
        for suffix in _DATABASE_SUFFIXES:
            _narrow(Path(f"{database}{suffix}"), 0o600, out)
    spool = home / (settings.audit_spool_dir or "audit-spool")
    _narrow(spool, 0o700, out)
    if spool.is_dir() and not spool.is_symlink():
        with contextlib.suppress(FileNotFoundError):  # a spool file reclaimed meanwhile
            for entry in sorted(spool.iterdir()):
                _narrow(entry, 0o700 if entry.is_dir() else 0o600, out)
    for change in out:
        log.warning("narrowed the permissions of %s", change)
    return out

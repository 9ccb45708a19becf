"""The node's home is private: 0700 directories, 0600 files, whatever existed before."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from exchange.config import load_settings
from exchange.node.home import create_private_file, tighten_home
from exchange.node.service import init_home


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_a_world_readable_home_is_narrowed_and_every_change_is_named(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "audit-spool").mkdir(parents=True)
    files = ["exchange.db", "exchange.db-wal", "exchange.db-shm", "server-secret",
             "node-signing.key", "audit-spool/12345.spool"]
    for name in files:
        (home / name).write_text("x")
        os.chmod(home / name, 0o644)
    os.chmod(home, 0o755)
    os.chmod(home / "audit-spool", 0o775)
    (home / "notes.txt").write_text("the operator's own file")
    os.chmod(home / "notes.txt", 0o644)

    changed = tighten_home(load_settings(home, env={"EXCHANGE_SERVER_SECRET": "x" * 32}))

    assert {(c.path.relative_to(tmp_path).as_posix(), c.old_mode, c.new_mode)
            for c in changed} == {
        ("home", 0o755, 0o700), ("home/audit-spool", 0o775, 0o700),
        *{(f"home/{name}", 0o644, 0o600) for name in files}}
    assert str(changed[0]) == f"{home}: 0755 -> 0700"
    assert mode(home / "notes.txt") == 0o644  # not the node's: left alone
    assert tighten_home(load_settings(home, env={"EXCHANGE_SERVER_SECRET": "x" * 32})) == []


def test_a_database_outside_the_home_is_narrowed_too(tmp_path: Path) -> None:
    db = tmp_path / "elsewhere" / "cx.db"
    db.parent.mkdir()
    db.write_text("")
    os.chmod(db, 0o640)
    settings = load_settings(tmp_path / "home", env={
        "EXCHANGE_DATABASE_URL": f"sqlite:///{db}", "EXCHANGE_SERVER_SECRET": "x" * 32})
    assert [(c.path, c.new_mode) for c in tighten_home(settings)] == [(db, 0o600)]


def test_init_under_a_permissive_umask_creates_a_private_database(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    old = os.umask(0o022)
    try:
        init_home(load_settings(home, env={}))
        with sqlite3.connect(home / "exchange.db") as conn:  # a write makes -wal and -shm
            conn.execute("CREATE TABLE probe (x)")
    finally:
        os.umask(old)
    assert mode(home) == 0o700
    for name in ("exchange.db", "exchange.db-wal", "exchange.db-shm", "server-secret",
                 "node-signing.key"):
        assert mode(home / name) == 0o600, name


def test_create_private_file_never_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    old = os.umask(0o022)
    try:
        assert create_private_file(path) is True
        assert mode(path) == 0o600
        path.write_text("kept")
        assert create_private_file(path) is False
    finally:
        os.umask(old)
    assert path.read_text() == "kept"

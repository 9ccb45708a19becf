"""The node's use-cases as one object, :class:`Exchange`, and :func:`init_home`.

:class:`Exchange` combines the use-case mixins over the shared state of
:class:`~exchange.node.base.NodeBase`: members and keys (:mod:`.members`), publishing
(:mod:`.publish`), reading and disclosure (:mod:`.read`), search (:mod:`.search`), flat
feeds (:mod:`.feeds`), explaining (:mod:`.explain`),
withdrawing (:mod:`.withdraw`, TAXII DELETE: admins only, as a node-signed revocation).
Together they orchestrate the pure model (validation, TLP), the store and the API-key
scheme. It knows nothing about HTTP or the command line: the TAXII adapter
(:mod:`exchange.taxii`) and the CLI (:mod:`exchange.cli.main`) call it and translate its
:class:`~exchange.errors.ExchangeError` into their own answers.

Access rules applied here (the sharing-policy engine refines the read side):

* An organisation's grant on a collection says whether its accounts may read and write.
  Publishers and admins may write where their organisation may; consumers and auditors
  only read. Admins may read every collection.
* A collection an account can neither read nor write does not exist for it (404), so
  names of other members' collections do not leak.
* Only admin accounts may delete (TAXII DELETE), and a delete is a node-signed
  revocation that reaches every earlier recipient (:mod:`.withdraw`).
* An account may publish only objects whose ``created_by_ref`` is its own organisation's
  identity (objects without ``created_by_ref``, such as SCOs and marking definitions,
  are attributed to the publishing organisation).
* Reads are filtered by TLP in the query. Until agreements are configured the baseline
  is conservative: CLEAR, GREEN and AMBER to any reader of the collection; AMBER+STRICT
  to member organisations only, never to constituents; RED only to its producer.
"""

from __future__ import annotations

import logging
import secrets

from exchange.config import SECRET_FILE, Settings
from exchange.errors import ConfigError
from exchange.node.explain import Explaining
from exchange.node.feeds import Feeds
from exchange.node.home import create_private_file, sqlite_database_path, tighten_home
from exchange.node.members import Members
from exchange.node.mispfeed import MispFeeds
from exchange.node.nodekey import ensure_node_key
from exchange.node.peers import Peers
from exchange.node.publish import Publishing
from exchange.node.read import Reading
from exchange.node.search import Searching
from exchange.node.withdraw import Withdrawing
from exchange.storage import open_store

log = logging.getLogger(__name__)


def init_home(settings: Settings) -> bool:
    """Create the exchange home: directory, server secret, database schema.

    Safe to run again: an existing secret is kept and the schema is only upgraded. The
    home ends 0700 and every file the node writes 0600, whatever existed before
    (:func:`~exchange.node.home.tighten_home`).

    Returns:
        True when a new server secret was written.

    Raises:
        ConfigError: The home cannot be written.
        StorageError: The database cannot be reached or migrated.
    """
    created = False
    try:
        settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        tighten_home(settings)
        database = sqlite_database_path(settings)
        if database is not None:
            database.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            create_private_file(database)  # SQLite's -wal and -shm files follow its mode
        secret_path = settings.home / SECRET_FILE
        if settings.server_secret is None and not secret_path.exists():
            secret_path.touch(mode=0o600)
            secret_path.write_text(secrets.token_urlsafe(32) + "\n", encoding="utf-8")
            created = True
    except OSError as e:
        raise ConfigError(f"cannot write the exchange home {settings.home}: {e.strerror}") from e
    store = open_store(settings, create=True)
    try:
        store.upgrade()
        ensure_node_key(settings, store)
    finally:
        store.close()
    return created


class Exchange(Members, Publishing, Searching, Feeds, MispFeeds, Reading, Explaining,
               Withdrawing, Peers):
    """The exchange's use-cases over one store. Constructing it does no I/O."""

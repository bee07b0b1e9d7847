"""One ``TokenSource`` per OAuth2 mailbox per process, shared by its watcher and senders."""

from __future__ import annotations

import threading

from sequencer.config import MailboxConfig, Settings
from sequencer.oauth.grants import DatabaseGrants, FileGrants, GrantStore
from sequencer.oauth.tokens import TokenSource
from sequencer.store.db import Store


def grant_store(mailbox: MailboxConfig, store: Store) -> GrantStore:
    """Where ``mailbox``'s grant is kept (it must be ``auth: oauth2``)."""
    oauth = mailbox.oauth
    if oauth is None:
        raise ValueError(f"mailbox {mailbox.name} does not use auth: oauth2")
    if oauth.token_file is not None:
        return FileGrants(oauth.token_file)
    assert oauth.token_key is not None  # config requires one without token_file
    return DatabaseGrants(store, oauth.token_key, oauth.token_key_env)


class TokenSources:
    """Built lazily, one per mailbox; thread-safe."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self._settings = settings
        self._store = store
        self._lock = threading.Lock()
        self._sources: dict[str, TokenSource] = {}

    def __repr__(self) -> str:
        return f"TokenSources({sorted(self._sources)})"

    def get(self, mailbox: str) -> TokenSource | None:
        """The source for an ``auth: oauth2`` mailbox; None for a password mailbox."""
        config = self._settings.mailboxes.get(mailbox)
        if config is None or config.oauth is None:
            return None
        with self._lock:
            source = self._sources.get(mailbox)
            if source is None:
                source = self._sources[mailbox] = TokenSource(
                    mailbox, config.oauth.client, grant_store(config, self._store)
                )
            return source

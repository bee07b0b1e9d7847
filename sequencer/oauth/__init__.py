"""OAuth2 for mailboxes: the authorization flows, stored grants and access tokens.

* ``flows``: ``sequencer auth MAILBOX`` — the authorization-code flow with PKCE on a
  loopback redirect, and the device-code flow where a provider allows it for mail scopes.
* ``grants``: where a mailbox's refresh token lives (never in the YAML): encrypted in the
  database with a key from the environment, or in a 0600 file the settings name.
* ``tokens``: ``TokenSource`` hands out access tokens, refreshed before they expire; a
  revoked grant raises ``GrantNeeded`` once per stored grant, with no further network
  calls until ``sequencer auth`` stores a new one.

The HTTP side is Authlib's httpx client (docs/oauth2.md says why Authlib).
"""

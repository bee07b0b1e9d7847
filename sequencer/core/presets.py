"""Provider presets: what ``provider: NAME`` fills in for a mailbox (issue 9, item 2).

Each preset is plain settings data, merged *under* what the mailbox says: an explicit key
always wins, key by key (``smtp: {port: 2525}`` keeps the preset's host and TLS mode).
Sources for every figure are in docs/providers.md.

``sent_folder`` and ``saves_sent`` (does the server file submitted mail in Sent by
itself?) decide where and whether a sent message is copied (``save_sent: auto``). A
published per-minute limit becomes ``min_spacing`` (30 a minute: 2s between two sends).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_GOOGLE_OAUTH: dict[str, Any] = {
    "authorize_url": "https://accounts.google.com/o/oauth2/v2/auth",
    "token_url": "https://oauth2.googleapis.com/token",
    "scopes": ["https://mail.google.com/"],
    "authorize_params": {"access_type": "offline", "prompt": "consent"},
}


def _microsoft_oauth(tenant: str) -> dict[str, Any]:
    base = f"https://login.microsoftonline.com/{tenant}/oauth2/v2.0"
    return {
        "authorize_url": f"{base}/authorize",
        "token_url": f"{base}/token",
        "device_url": f"{base}/devicecode",
        "scopes": [
            "https://outlook.office.com/IMAP.AccessAsUser.All",
            "https://outlook.office.com/SMTP.Send",
            "offline_access",
        ],
        "redirect_host": "localhost",
    }


def _mail(smtp: tuple[str, int, str], imap: tuple[str, int], sent: str, saves: bool,
          daily: int, oauth2: dict[str, Any] | None = None, per_minute: int | None = None
          ) -> dict[str, Any]:
    preset: dict[str, Any] = {
        "smtp": {"host": smtp[0], "port": smtp[1], "tls": smtp[2]},
        "imap": {"host": imap[0], "port": imap[1], "tls": "ssl", "folder": "INBOX"},
        "sent_folder": sent,
        "saves_sent": saves,
        "daily_limit": daily,
    }
    if oauth2 is not None:
        preset["oauth2"] = oauth2
    if per_minute is not None:
        preset["min_spacing"] = f"{60 / per_minute:g}s"
    return preset


PRESETS: Mapping[str, Mapping[str, Any]] = {
    "gmail": _mail(("smtp.gmail.com", 465, "ssl"), ("imap.gmail.com", 993),
                   "[Gmail]/Sent Mail", True, 500, _GOOGLE_OAUTH),
    "google-workspace": _mail(("smtp.gmail.com", 465, "ssl"), ("imap.gmail.com", 993),
                              "[Gmail]/Sent Mail", True, 2000, _GOOGLE_OAUTH),
    "microsoft365": _mail(("smtp.office365.com", 587, "starttls"),
                          ("outlook.office365.com", 993), "Sent Items", True, 10000,
                          _microsoft_oauth("organizations"), per_minute=30),
    "outlook": _mail(("smtp-mail.outlook.com", 587, "starttls"),
                     ("outlook.office365.com", 993), "Sent", True, 300,
                     _microsoft_oauth("consumers"), per_minute=30),
    "fastmail": _mail(("smtp.fastmail.com", 465, "ssl"), ("imap.fastmail.com", 993),
                      "Sent", False, 200),
    "icloud": _mail(("smtp.mail.me.com", 587, "starttls"), ("imap.mail.me.com", 993),
                    "Sent Messages", False, 1000),
    "zoho": _mail(("smtp.zoho.com", 465, "ssl"), ("imap.zoho.com", 993), "Sent", False,
                  1200),
    "yahoo": _mail(("smtp.mail.yahoo.com", 465, "ssl"), ("imap.mail.yahoo.com", 993),
                   "Sent", False, 500),
}

def merged(preset: Mapping[str, Any], explicit: Mapping[str, Any]) -> dict[str, Any]:
    """``explicit`` over ``preset``, recursively for mappings; explicit keys win."""
    out: dict[str, Any] = {}
    for key, value in preset.items():
        out[key] = value
    for key, value in explicit.items():
        base = out.get(key)
        if isinstance(base, Mapping) and isinstance(value, Mapping):
            out[key] = merged(base, value)
        else:
            out[key] = value
    return out

"""Shared fixtures. Each real server has its own plugin module under tests/fixtures/."""

pytest_plugins = [
    "tests.fixtures.smtp",
    "tests.fixtures.proxy",
    "tests.fixtures.dovecot",
    "tests.fixtures.redis",
    "tests.fixtures.postgres",
    "tests.fixtures.oauth_provider",
    "tests.fixtures.oauth_mail",
    "tests.inboxes",
]

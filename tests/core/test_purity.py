"""The core is pure: it imports nothing that does I/O. The library never imports the process
package. Each check runs in a fresh interpreter, so nothing imported by other tests hides a
dependency."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

#: Libraries that talk to a database, a mail server, a broker or the network, or render
#: user templates: the core must work with every one of them missing.
IO_LIBRARIES = ("sqlalchemy", "alembic", "psycopg", "jinja2", "aiosmtplib", "aiosmtpd",
                "aioimaplib", "dramatiq", "redis", "httpx", "authlib", "workers")

IMPORT_ALL = """
import importlib, pkgutil, sys

class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, Blocked())
package = importlib.import_module(PACKAGE)
names = [PACKAGE] + [m.name for m in pkgutil.walk_packages(package.__path__, PACKAGE + ".")
                     if not m.name.endswith(SKIP)]
for name in names:
    importlib.import_module(name)
leaked = sorted({m.split(".")[0] for m in sys.modules} & set(BLOCKED))
assert not leaked, leaked
print(len(names))
"""


def import_all(package: str, blocked: tuple[str, ...],
               skip: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    script = (f"PACKAGE = {package!r}\nBLOCKED = {blocked!r}\nSKIP = {skip!r}\n" + IMPORT_ALL)
    return subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=60)


def test_every_core_module_imports_with_the_io_libraries_blocked() -> None:
    result = import_all("sequencer.core", IO_LIBRARIES)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) >= 10  # every module of the core was imported


def test_the_blocking_itself_works_so_the_check_above_can_fail() -> None:
    result = import_all("sequencer.store", IO_LIBRARIES)
    assert result.returncode != 0
    assert "sqlalchemy is blocked in this test" in result.stderr


def test_no_library_module_imports_the_process_package() -> None:
    # __main__ is the `python -m sequencer` entry point (it starts the CLI in workers/);
    # the migration environment runs only inside alembic.
    result = import_all("sequencer", ("workers",), skip=("__main__", "migrations.env"))
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) >= 40

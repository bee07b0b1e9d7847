"""docker-compose.yml is a valid Compose file: Debian's `docker-compose` (1.29) parses and
checks it with `config`, which needs no container engine (scripts/install-servers installs
it). A file it cannot read fails the check, so the check can fail."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.workdir import REPO

INSTALL_HINT = "run scripts/install-servers (Debian package docker-compose)"


def _compose() -> str:
    found = shutil.which("docker-compose")
    assert found is not None, f"docker-compose is missing: {INSTALL_HINT}"
    return found


def _config(compose_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_compose(), "-f", str(compose_file), "config", "-q"],
                          cwd=compose_file.parent, capture_output=True, text=True,
                          timeout=60)


def test_docker_compose_yml_passes_docker_compose_config() -> None:
    result = _config(REPO / "docker-compose.yml")
    assert result.returncode == 0, result.stderr


def test_docker_compose_config_refuses_a_broken_file(tmp_path: Path) -> None:
    text = (REPO / "docker-compose.yml").read_text(encoding="utf-8")
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(text.replace("    image: redis:7\n", "    image: redis:7\n    imagee: x\n"),
                      encoding="utf-8")
    (tmp_path / "Dockerfile").write_text("FROM scratch\n", encoding="utf-8")
    assert "imagee" in broken.read_text(encoding="utf-8")
    result = _config(broken)
    assert result.returncode != 0
    assert "imagee" in result.stderr, result.stderr

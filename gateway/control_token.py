"""The control-plane token of a local pack: kept in ``$TOMBOLA_HOME/token``, readable by its owner only."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def ensure_token(home: Path) -> tuple[str, Path]:
    """The token stored under ``home``, created on first use; returns it and its file."""
    path = home / "token"
    home.mkdir(parents=True, exist_ok=True)
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        token = ""
    if not token:
        token = secrets.token_urlsafe(32)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(token + "\n")
    os.chmod(path, 0o600)
    return token, path

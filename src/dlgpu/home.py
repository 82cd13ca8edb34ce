"""dlgpu's own things: its version, UTC time stamps, where it keeps files, and atomic writes.

One rule for every directory dlgpu writes or reads on its own (the profile cache, the results database, the
user catalog): a variable naming that one thing wins (``DLGPU_CACHE_DIR``, ``DLGPU_DB``, ``DLGPU_CONFIG_DIR``);
else ``$DLGPU_HOME`` holds all of them (``cache/``, ``results.sqlite``, ``config/``); else the platform's user
directories (``platformdirs``: ``~/.cache/dlgpu``, ``~/.local/share/dlgpu``, ``~/.config/dlgpu`` on Linux)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

HOME_ENV = "DLGPU_HOME"
CACHE_ENV = "DLGPU_CACHE_DIR"
DB_ENV = "DLGPU_DB"
CONFIG_ENV = "DLGPU_CONFIG_DIR"


def dlgpu_version() -> str:
    """The installed distribution's version (``0.0.0+unknown`` when run from a source tree not installed)."""
    from importlib import metadata

    try:
        return metadata.version("dlgpu")
    except metadata.PackageNotFoundError:
        return "0.0.0+unknown"


def utc_now() -> str:
    """Now, in UTC, as ISO 8601 to the second: the one time stamp format of every document and stored run."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _home(env: Mapping[str, str]) -> Path | None:
    return Path(env[HOME_ENV]).expanduser() if env.get(HOME_ENV) else None


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where traced operator profiles are kept between runs."""
    env = os.environ if env is None else env
    if env.get(CACHE_ENV):
        return Path(env[CACHE_ENV]).expanduser()
    home = _home(env)
    if home is not None:
        return home / "cache"
    import platformdirs

    return Path(platformdirs.user_cache_dir("dlgpu", appauthor=False))


def default_db_path(env: Mapping[str, str] | None = None) -> Path:
    """The results database: ``$DLGPU_DB``, else ``$DLGPU_HOME/results.sqlite``, else the user data dir."""
    env = os.environ if env is None else env
    if env.get(DB_ENV):
        return Path(env[DB_ENV]).expanduser()
    home = _home(env)
    if home is not None:
        return home / "results.sqlite"
    import platformdirs

    return Path(platformdirs.user_data_dir("dlgpu", appauthor=False)) / "results.sqlite"


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    """The user's configuration (their catalog files live in ``catalog/`` below it): ``$DLGPU_CONFIG_DIR``,
    else ``$DLGPU_HOME/config``, else ``$XDG_CONFIG_HOME/dlgpu``, else ``~/.config/dlgpu``."""
    env = os.environ if env is None else env
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]).expanduser()
    home = _home(env)
    if home is not None:
        return home / "config"
    if env.get("XDG_CONFIG_HOME"):
        return Path(env["XDG_CONFIG_HOME"]).expanduser() / "dlgpu"
    return Path.home() / ".config" / "dlgpu"


def user_catalog_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where user catalog files live: ``catalog/`` in the config dir (so other configuration can sit beside it)."""
    return config_dir(env) / "catalog"


def write_json_atomic(path: Path, doc: Any) -> None:
    write_text_atomic(path, json.dumps(doc, indent=1))


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; give it the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise

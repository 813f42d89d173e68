"""Configuration shared by every MiniSQL process: common CLI flags, logging, secrets.

Two local files hold what must never be published in ZooKeeper:

* the *secrets file* (``--secrets``): the MariaDB account every proxy and region
  uses on the backends, ``{"backend_user": "...", "backend_password": "..."}``,
  and the ZooKeeper digest identities: ``zk_user``/``zk_password`` (the
  cluster's, which owns every znode) and ``zk_status_user``/``zk_status_password``
  (read-only, for ``minisql status``);
* the *users file* (``--users``): the accounts clients log in to the proxy with,
  ``{"users": {"root": {"native_password_hash": "<40 hex>"}}}`` where the hash
  is SHA1(SHA1(password)) in hex -- what ``mysql_native_password`` verifies --
  and ``""`` means an empty password.  Plain-text passwords are never stored.

Both are written with mode 0600 (see `write_backend_credentials`, `write_users`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import secrets
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

log = logging.getLogger(__name__)

DEFAULT_ZK = "127.0.0.1:2181"
DEFAULT_ZK_ROOT = "/minisql"
DEFAULT_LOG_LEVEL = "INFO"

ENV_ZK = "MINISQL_ZK"
ENV_BACKEND_USER = "MINISQL_BACKEND_USER"
ENV_BACKEND_PASSWORD = "MINISQL_BACKEND_PASSWORD"
ENV_ZK_USER = "MINISQL_ZK_USER"
ENV_ZK_PASSWORD = "MINISQL_ZK_PASSWORD"
ENV_ZK_STATUS_USER = "MINISQL_ZK_STATUS_USER"
ENV_ZK_STATUS_PASSWORD = "MINISQL_ZK_STATUS_PASSWORD"

_LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
_HEX40 = re.compile(r"^[0-9a-f]{40}$")


class ConfigError(Exception):
    """A configuration file or setting is missing or malformed (message says which)."""


# -- common command-line flags ----------------------------------------------------
def _log_level(value: str) -> str:
    level = value.strip().upper()
    if level == "WARN":
        level = "WARNING"
    if level not in _LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"invalid log level {value!r} (choose from {', '.join(_LOG_LEVELS)})")
    return level


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags every cluster process takes: where ZooKeeper is, and logging."""
    parser.add_argument(
        "--zk",
        default=os.environ.get(ENV_ZK) or DEFAULT_ZK,
        metavar="HOST:PORT[,...]",
        help=f"ZooKeeper connect string (default: ${ENV_ZK} or {DEFAULT_ZK})",
    )
    parser.add_argument(
        "--zk-root",
        default=DEFAULT_ZK_ROOT,
        metavar="PATH",
        help=f"ZooKeeper path under which the cluster lives (default: {DEFAULT_ZK_ROOT})",
    )
    parser.add_argument(
        "--log-level",
        default=DEFAULT_LOG_LEVEL,
        type=_log_level,
        metavar="LEVEL",
        help=f"logging level: {', '.join(_LOG_LEVELS)} (default: {DEFAULT_LOG_LEVEL})",
    )


def setup_logging(level: str | int = DEFAULT_LOG_LEVEL) -> None:
    """Log to stderr with timestamps; kazoo's chatter stays at WARNING unless DEBUG."""
    if isinstance(level, str):
        level = _log_level(level)
        numeric = getattr(logging, level)
    else:
        numeric = int(level)
    logging.basicConfig(
        level=numeric,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        force=True,
    )
    logging.getLogger("kazoo").setLevel(numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING))


# -- private files ----------------------------------------------------------------
def write_private_json(path: str | os.PathLike[str], data: Mapping[str, Any]) -> None:
    """Atomically write JSON readable by the owner only (mode 0600 from the start)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _read_json(path: str | os.PathLike[str], what: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{what} file {str(path)!r} does not exist") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {what} file {str(path)!r}: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{what} file {str(path)!r} must hold a JSON object")
    return doc


def _warn_if_readable_by_others(path: str | os.PathLike[str], what: str) -> None:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s file %s is accessible by other users (mode %o); chmod 600 it", what, path, mode & 0o777)


def generate_password(nbytes: int = 24) -> str:
    """A random password safe to put in a JSON file and a MariaDB literal."""
    return secrets.token_urlsafe(nbytes)


# -- backend (MariaDB) credentials ------------------------------------------------
@dataclass(frozen=True)
class BackendCredentials:
    """The MariaDB account proxies and regions use on every backend."""

    user: str
    password: str

    def __repr__(self) -> str:  # never print the password by accident
        return f"BackendCredentials(user={self.user!r}, password='***')"

    def to_dict(self) -> dict[str, str]:
        return {"backend_user": self.user, "backend_password": self.password}


def load_backend_credentials(path: str | os.PathLike[str] | None) -> BackendCredentials:
    """Read {"backend_user", "backend_password"} from `path`; the environment
    variables MINISQL_BACKEND_USER / MINISQL_BACKEND_PASSWORD override each field.

    Raises ConfigError when neither a file nor the environment supplies both.
    """
    user: str | None = None
    password: str | None = None
    if path:
        doc = _read_json(path, "secrets")
        _warn_if_readable_by_others(path, "secrets")
        if "backend_user" in doc:
            user = doc["backend_user"]
        if "backend_password" in doc:
            password = doc["backend_password"]
        if user is not None and not isinstance(user, str):
            raise ConfigError(f"secrets file {str(path)!r}: backend_user must be a string")
        if password is not None and not isinstance(password, str):
            raise ConfigError(f"secrets file {str(path)!r}: backend_password must be a string")
    env_user = os.environ.get(ENV_BACKEND_USER)
    env_password = os.environ.get(ENV_BACKEND_PASSWORD)
    if env_user is not None:
        user = env_user
    if env_password is not None:
        password = env_password
    missing = [
        name
        for name, value, env in (
            ("backend_user", user, ENV_BACKEND_USER),
            ("backend_password", password, ENV_BACKEND_PASSWORD),
        )
        if value is None or (name == "backend_user" and not value)
    ]
    if missing:
        where = f"secrets file {str(path)!r}" if path else "no --secrets file given"
        raise ConfigError(
            f"backend credentials incomplete ({where}): missing {', '.join(missing)}; "
            f"pass --secrets FILE holding {{\"backend_user\": ..., \"backend_password\": ...}} "
            f"or set {ENV_BACKEND_USER} and {ENV_BACKEND_PASSWORD}"
        )
    assert user is not None and password is not None
    return BackendCredentials(user=user, password=password)


def write_backend_credentials(
    path: str | os.PathLike[str], creds: BackendCredentials, zk: "ZooKeeperCredentials | None" = None
) -> None:
    """Write the secrets file: the backend account, plus the ZooKeeper identities if given."""
    doc: dict[str, str] = creds.to_dict()
    if zk is not None:
        doc.update(zk.to_dict())
    write_private_json(path, doc)


# -- ZooKeeper identities ---------------------------------------------------------
@dataclass(frozen=True)
class ZooKeeperCredentials:
    """The cluster's ZooKeeper digest identity and the read-only status identity.

    An empty user means "not configured": the cluster identity unset keeps
    ZooKeeper world-open as before ACLs existed (processes warn about it).
    """

    user: str = ""
    password: str = ""
    status_user: str = ""
    status_password: str = ""

    def __repr__(self) -> str:  # never print a password by accident
        return f"ZooKeeperCredentials(user={self.user!r}, status_user={self.status_user!r}, passwords='***')"

    @property
    def configured(self) -> bool:
        return bool(self.user)

    @property
    def status_configured(self) -> bool:
        return bool(self.status_user)

    def to_dict(self) -> dict[str, str]:
        doc = {}
        if self.user:
            doc.update(zk_user=self.user, zk_password=self.password)
        if self.status_user:
            doc.update(zk_status_user=self.status_user, zk_status_password=self.status_password)
        return doc

    @classmethod
    def generate(cls, user: str = "minisql", status_user: str = "minisql-status") -> "ZooKeeperCredentials":
        return cls(user, generate_password(), status_user, generate_password())


def load_zk_credentials(path: str | os.PathLike[str] | None) -> ZooKeeperCredentials:
    """Read zk_user/zk_password and zk_status_user/zk_status_password from the
    secrets file at `path` (may be None); the MINISQL_ZK_* environment
    variables override each field, and an empty value counts as unset.

    Raises ConfigError when an identity has a user but no password (or the
    reverse), or a user name holds ':' (the digest scheme's separator).
    """
    doc: dict[str, Any] = {}
    if path:
        doc = _read_json(path, "secrets")
        _warn_if_readable_by_others(path, "secrets")
    where = f"secrets file {str(path)!r}" if path else "the environment"
    values: dict[str, str] = {}
    for key, env in (
        ("zk_user", ENV_ZK_USER),
        ("zk_password", ENV_ZK_PASSWORD),
        ("zk_status_user", ENV_ZK_STATUS_USER),
        ("zk_status_password", ENV_ZK_STATUS_PASSWORD),
    ):
        value = os.environ.get(env)
        if value is None:
            value = doc.get(key, "")
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {key} must be a string")
        values[key] = value
    for user_key, password_key in (("zk_user", "zk_password"), ("zk_status_user", "zk_status_password")):
        user, password = values[user_key], values[password_key]
        if bool(user) != bool(password):
            missing = password_key if user else user_key
            raise ConfigError(f"ZooKeeper credentials incomplete ({where}): {user_key} and {password_key} go together; missing {missing}")
        if ":" in user:
            raise ConfigError(f"{where}: {user_key} must not contain ':'")
    return ZooKeeperCredentials(
        values["zk_user"], values["zk_password"], values["zk_status_user"], values["zk_status_password"]
    )


# -- proxy users ------------------------------------------------------------------
def native_password_hash(password: str) -> str:
    """SHA1(SHA1(password)) as 40 lowercase hex digits ("" for the empty password).

    This is what mysql_native_password stores (MySQL's PASSWORD() without the
    leading '*') and what mysql-mimic's `User.auth_string` expects.
    """
    if password == "":
        return ""
    return hashlib.sha1(hashlib.sha1(password.encode("utf-8")).digest()).hexdigest()


def _normalize_hash(value: Any, user: str, path: str | os.PathLike[str]) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"users file {str(path)!r}: native_password_hash of {user!r} must be a string")
    text = value.strip().lower()
    if text.startswith("*"):  # MySQL's PASSWORD() / mysql.user format
        text = text[1:]
    if text and not _HEX40.match(text):
        raise ConfigError(
            f"users file {str(path)!r}: native_password_hash of {user!r} must be 40 hex digits "
            f"(SHA1(SHA1(password)), see `minisql.config.native_password_hash`) or \"\" for no password"
        )
    return text


@dataclass(frozen=True)
class ProxyUser:
    """A client account of the proxy.  `native_password_hash` == "" means no password."""

    name: str
    native_password_hash: str
    # Optional (see docs/security.md, "TLS and authentication plugins"):
    sha2_hash: str = ""  # "sha2_password_hash": SHA256(SHA256(password)) hex, caching_sha2_password's fast path
    plugin: str = ""  # "" = mysql_native_password; or caching_sha2_password, ed25519
    require_ssl: bool = False  # REQUIRE SSL
    ed25519_key: str = ""  # MariaDB's ed25519 auth string (base64 public key)

    @property
    def has_password(self) -> bool:
        return self.native_password_hash != ""

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"native_password_hash": self.native_password_hash}
        for key, (attr, _) in _OPTIONAL_USER_FIELDS.items():
            if getattr(self, attr):
                doc[key] = getattr(self, attr)
        return doc


# users-file key -> (ProxyUser attribute, type)
_OPTIONAL_USER_FIELDS = {
    "sha2_password_hash": ("sha2_hash", str), "plugin": ("plugin", str),
    "require_ssl": ("require_ssl", bool), "ed25519_key": ("ed25519_key", str),
}
_USER_PLUGINS = ("", "mysql_native_password", "caching_sha2_password", "ed25519")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _optional_user_fields(entry: Mapping[str, Any], user: str, path: str | os.PathLike[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, (attr, kind) in _OPTIONAL_USER_FIELDS.items():
        if key not in entry:
            continue
        value = entry[key]
        if not isinstance(value, kind):
            raise ConfigError(f"users file {str(path)!r}: {key} of {user!r} must be a {kind.__name__}")
        out[attr] = value.strip() if isinstance(value, str) else value
    if "sha2_hash" in out:
        out["sha2_hash"] = out["sha2_hash"].lower()
        if out["sha2_hash"] and not _HEX64.match(out["sha2_hash"]):
            raise ConfigError(f"users file {str(path)!r}: sha2_password_hash of {user!r} must be 64 hex digits (SHA256(SHA256(password)))")
    if out.get("plugin", "") not in _USER_PLUGINS:
        raise ConfigError(f"users file {str(path)!r}: plugin of {user!r} must be one of {', '.join(p for p in _USER_PLUGINS if p)}")
    if out.get("plugin") == "ed25519" and not out.get("ed25519_key"):
        raise ConfigError(f"users file {str(path)!r}: user {user!r} has plugin ed25519 but no ed25519_key")
    return out


def load_users(path: str | os.PathLike[str] | None) -> dict[str, ProxyUser]:
    """Read {"users": {name: {"native_password_hash": "..."}}}; raises ConfigError."""
    if not path:
        raise ConfigError(
            "no users file given: pass --users FILE holding "
            "{\"users\": {\"root\": {\"native_password_hash\": \"\"}}}"
        )
    doc = _read_json(path, "users")
    _warn_if_readable_by_others(path, "users")
    users = doc.get("users")
    if not isinstance(users, dict) or not users:
        raise ConfigError(f"users file {str(path)!r} must hold a non-empty \"users\" object")
    result: dict[str, ProxyUser] = {}
    for name, entry in users.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"users file {str(path)!r}: user names must be non-empty strings")
        if not isinstance(entry, dict):
            raise ConfigError(f"users file {str(path)!r}: entry of {name!r} must be an object")
        if "password" in entry:
            raise ConfigError(
                f"users file {str(path)!r}: user {name!r} has a plain-text \"password\"; "
                f"store \"native_password_hash\" instead"
            )
        if "native_password_hash" not in entry:
            raise ConfigError(f"users file {str(path)!r}: user {name!r} lacks \"native_password_hash\"")
        result[name] = ProxyUser(
            name=name, native_password_hash=_normalize_hash(entry["native_password_hash"], name, path),
            **_optional_user_fields(entry, name, path),
        )
    return result


def write_users(path: str | os.PathLike[str], users: Mapping[str, ProxyUser]) -> None:
    write_private_json(path, {"users": {name: u.to_dict() for name, u in sorted(users.items())}})

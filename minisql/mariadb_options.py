"""Server options for the regions' MariaDB from `minisql up --mariadb-option`.

Why this exists: an application, or MariaDB's own test suite (MTR), expects
server settings the stack does not choose -- latin1 as the server charset,
MyISAM as the default engine, small buffers.  `minisql up` passes such
options to every region's mariadbd.

Why it is checked: the stack manages some options itself and depends on
them -- where the server listens (--port, --socket, --bind-address), where
its files are (--datadir, --pid-file, --log-error, read by the supervisor),
who it runs as (--user) -- and some are the regions' hardening, what stands
between a client's SQL and the server's files (--secure-file-priv,
--local-infile=0, grant tables, --skip-name-resolve; see docs/security.md).
An option that would change one of those is refused here with the reason,
before anything starts.  mariadbd also takes unambiguous *prefixes* of
option names (``--datad=/x`` is --datadir), ``--loose-``, ``--skip-``,
``--enable-``, ``--disable-`` and ``--maximum-`` forms and ``_`` for ``-``,
so names are normalised before the check and a prefix of a forbidden name
is refused too.  As a second line, `MariaDBProcess.command` puts the managed
options *after* the user's, so even a spelling this check missed loses to
the stack's own value (mariadbd keeps the last value of an option).

Accepted forms: ``--name=value``, ``--name`` (a flag), and the same without
the leading dashes (``name=value``), which is handy because argparse takes
``--mariadb-option name=value`` with a space but needs
``--mariadb-option=--name=value`` for the dashed form.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

#: option name (normalised) -> why the stack keeps it for itself
FORBIDDEN: dict[str, str] = {
    "port": "the stack assigns each region's MariaDB port (--mysql-base-port)",
    "extra-port": "the stack assigns the regions' ports (--mysql-base-port)",
    "socket": "the stack places each region's unix socket itself",
    "bind-address": "the regions listen on 127.0.0.1, where the agents and proxies reach them",
    "networking": "the agents and proxies reach the regions over TCP",
    "datadir": "each region's data lives under --data-dir/regions/<id>/mysql",
    "basedir": "the stack runs the system's MariaDB installation",
    "chroot": "the stack's paths (datadir, socket, logs) must stay valid",
    "pid-file": "the supervisor reads the pid file in the region's datadir",
    "log-error": "the supervisor reads the error log in --data-dir/logs to report failures",
    "user": "the stack chooses the account mariadbd runs as (mysql, not root)",
    "grant-tables": "accounts and rights are enforced by the regions (--skip-grant-tables would turn that off)",
    "init-file": "accounts are managed through the gateway, not by SQL run at server start",
    "secure-file-priv": "the regions' file access is confined to regions/<id>/mysql-files (hardening)",
    "local-infile": "the proxy relays its clients' LOAD DATA LOCAL files to the regions (proxy/localinfile.py)",
    "name-resolve": "the regions skip name resolution; account host patterns depend on it",
    "require-secure-transport": "the agents and proxies reach the regions over plain TCP on loopback",
    "plugin-dir": "plugins load only from the system's plugin directory (hardening)",
    "plugin-load": "plugins are not loaded at start (hardening); INSTALL SONAME works as usual",
    "plugin-load-add": "plugins are not loaded at start (hardening); INSTALL SONAME works as usual",
    "bootstrap": "the stack starts a normal server",
    "help": "the stack starts a normal server",
    "version": "the stack starts a normal server",
    "no-defaults": "the stack already runs mariadbd with --no-defaults",
    "defaults-file": "the stack runs mariadbd with --no-defaults; pass each option with --mariadb-option",
    "defaults-extra-file": "the stack runs mariadbd with --no-defaults; pass each option with --mariadb-option",
    "defaults-group-suffix": "the stack runs mariadbd with --no-defaults; pass each option with --mariadb-option",
    "print-defaults": "the stack starts a normal server",
}

#: prefixes mariadbd accepts in front of an option name (--loose-x, --skip-x, ...)
_MODIFIERS = ("loose-", "skip-", "enable-", "disable-", "maximum-")

#: the stack's default charset options, dropped as a pair when the user picks either
CHARSET_OPTIONS = frozenset({"character-set-server", "collation-server"})

_NAME = re.compile(r"[a-z0-9][a-z0-9-]*\Z")


class OptionError(ValueError):
    """A --mariadb-option the stack cannot pass on; the message says why."""


def option_name(option: str) -> str:
    """The normalised name of ``--name[=value]``: lower case, ``-`` for ``_``,
    modifiers (loose-, skip-, ...) stripped.  `option` must start with ``--``."""
    name = option[2:].split("=", 1)[0].strip().lower().replace("_", "-")
    changed = True
    while changed:
        changed = False
        for prefix in _MODIFIERS:
            if name.startswith(prefix) and len(name) > len(prefix):
                name = name[len(prefix) :]
                changed = True
    return name


def _forbidden_reason(name: str) -> tuple[str, str] | None:
    """(forbidden option, reason) if `name` is, or abbreviates, a forbidden option."""
    if name in FORBIDDEN:
        return name, FORBIDDEN[name]
    for forbidden, reason in FORBIDDEN.items():
        if forbidden.startswith(name):  # mariadbd would take `name` as an abbreviation of it
            return forbidden, reason
    return None


def parse_option(text: str) -> str:
    """One --mariadb-option as mariadbd gets it (``--name=value`` or ``--name``).

    Raises OptionError with a message fit for the user when the text is not
    an option mariadbd could take as one argument, or names an option the
    stack manages (see FORBIDDEN).
    """
    raw = text.strip()
    if not raw:
        raise OptionError("empty MariaDB option")
    if raw.startswith("-") and not raw.startswith("--"):
        raise OptionError(f"{text!r}: short options are not accepted; use the long form (--name=value)")
    option = raw if raw.startswith("--") else "--" + raw
    name_part, sep, value = option[2:].partition("=")
    if any(c.isspace() for c in name_part):
        raise OptionError(f"{text!r}: write the option as one word, --name=value (no spaces around the name)")
    normalised = name_part.lower().replace("_", "-")
    if not _NAME.match(normalised):
        raise OptionError(f"{text!r}: not a MariaDB option name")
    name = option_name(option)
    found = _forbidden_reason(name)
    if found is not None:
        forbidden, reason = found
        spelled = "" if forbidden == name else f" (mariadbd may read it as an abbreviation of --{forbidden})"
        raise OptionError(f"--{name_part}{spelled} cannot be set with --mariadb-option: {reason}")
    return f"--{name_part}{sep}{value}"


def parse_options(texts: Iterable[str]) -> list[str]:
    """`parse_option` for each; the first bad one raises."""
    return [parse_option(t) for t in texts]


def merge_defaults(defaults: Sequence[str], user: Sequence[str]) -> list[str]:
    """The stack's overridable defaults, minus what the user's options replace.

    A user option overrides a default of the same name simply by coming
    later, so only couplings need removing: the stack sets
    character-set-server and collation-server together (utf8mb4), and
    mariadbd refuses to start when they disagree, so if the user sets either
    one, both defaults are dropped and MariaDB derives the other.
    """
    names = {option_name(o) for o in user}
    if names & CHARSET_OPTIONS:
        return [d for d in defaults if option_name(d) not in CHARSET_OPTIONS]
    return list(defaults)

"""Python codecs for every MariaDB character set a client may use.

The proxy carries SQL text as str decoded with the client's character set
(bytes that do not decode kept as surrogates) and encodes it back for the
regions, so the bytes MariaDB receives are the bytes the client sent.
mysql-mimic names some charsets by their MariaDB names, which Python does
not know (`binary`, `koi8r`, `utf8mb4`...).  Registered here once:

* charsets with a Python codec under another name map to it (koi8r -> koi8_r);
* `binary` and the single-byte charsets Python lacks (dec8, hp8, swe7,
  keybcs2, armscii8, geostd8) map to latin-1, which turns each byte into one
  code point and back: byte-exact, and ASCII keywords read as ASCII (all of
  them are ASCII supersets), which is all the proxy needs to route.
"""

from __future__ import annotations

import codecs

_ALIASES = {
    "utf8mb4": "utf-8",
    "utf8mb3": "utf-8",
    "koi8r": "koi8_r",
    "koi8u": "koi8_u",
    "macce": "mac_latin2",
    "utf16le": "utf_16_le",
    "ucs2": "utf_16_be",
    "eucjpms": "euc_jp",
    "binary": "latin-1",
    "dec8": "latin-1",
    "hp8": "latin-1",
    "swe7": "latin-1",
    "keybcs2": "latin-1",
    "armscii8": "latin-1",
    "geostd8": "latin-1",
}


def _search(name: str) -> codecs.CodecInfo | None:
    target = _ALIASES.get(name.replace("-", "").replace("_", "").lower())
    return codecs.lookup(target) if target is not None else None


codecs.register(_search)

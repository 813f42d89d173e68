"""Client authentication: mysql_native_password against the users file.

Only SHA1(SHA1(password)) hashes are stored (the same thing MySQL stores), so
the users file never holds a password.  An unknown user gets the same 1045 as
a wrong password (MySQL does not reveal which users exist).
"""

from __future__ import annotations

import os
from typing import Mapping, Optional, Sequence

from mysql_mimic.auth import AuthPlugin, IdentityProvider, NativePasswordAuthPlugin, User

from minisql.config import ProxyUser


class UsersIdentityProvider(IdentityProvider):
    def __init__(self, users: Mapping[str, ProxyUser]) -> None:
        self.users = dict(users)
        self._plugin = NativePasswordAuthPlugin()

    def get_plugins(self) -> Sequence[AuthPlugin]:
        return [self._plugin]

    async def get_user(self, username: str) -> Optional[User]:
        user = self.users.get(username)
        if user is None:
            # A hash no password produces: authentication fails with 1045.
            return User(name=username, auth_string=os.urandom(20).hex(), auth_plugin=self._plugin.name)
        return User(name=username, auth_string=user.native_password_hash or None, auth_plugin=self._plugin.name)

"""Who a RESP connection is and what it may run (docs/kv.md, docs/security.md).

``AUTH [user] password`` authenticates as: ``default`` with a cluster token (every command),
a ``resp_users_file`` user (every command; plain-text passwords, kept for existing setups),
or a ``users_file`` user (bcrypt; reads need ``query``, writes ``execute``). A command the
user may not run gets Redis's ``-NOPERM``, a queued one fails its transaction as in Redis.
"""

from __future__ import annotations

import hmac

from litecluster.kv.registry import Kind
from litecluster.kv.reply import Err
from litecluster.server.credentials import TOKEN_HOLDER, Credentials, Identity

PERMISSION = {Kind.READ: "query", Kind.WRITE: "execute"}
"""What a users file user needs to run a command of each kind (SPECIAL ones: nothing)."""


async def check(
    passwords: dict[str, str], credentials: Credentials | None, user: bytes, password: bytes
) -> Identity | None:
    """The identity ``user`` authenticates as with ``password`` (None: refused)."""
    name = user.decode("utf-8", "replace")
    legacy = passwords.get(name)
    if legacy is not None:
        if hmac.compare_digest(legacy.encode(), password):
            return Identity(name, TOKEN_HOLDER.perms)
        return None
    if credentials is None:
        return None
    text = password.decode("utf-8", "replace")
    if name == "default":
        return credentials.bearer(text)
    return await credentials.user(name, text)


def noperm(who: Identity, kind: Kind, name: str) -> Err | None:
    """Redis's -NOPERM for a command ``who`` may not run, else None."""
    perm = PERMISSION.get(kind)
    if perm is None or who.may(perm):
        return None
    return Err(f"NOPERM User {who.name} has no permissions to run the '{name}' command")

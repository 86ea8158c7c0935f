"""Who may open a replication stream to the primary.

A replica node presents the cluster token. An embedded replica may instead present a user of
the nodes' users file (``connect(..., auth=(user, password))``) whose permissions include
``join-read-only`` (rqlite's name for a node that only reads) or ``join``: the application
then needs no cluster token, which may do everything. Such a login is admitted only for
``kind = embedded``: an embedded replica is never promoted and its acknowledgements never count
in synchronous mode, so a user who may read everything still cannot take part in durability.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from litecluster.replication.protocol import Hello
from litecluster.replication.tokens import Tokens

BAD_TOKEN = "wrong or missing cluster token"

Login = Callable[[str, str], Awaitable[bool]]
"""``login(user, password)``: the user exists, the password is right and it may join."""


async def refusal(hello: Hello, tokens: Tokens, login: Login | None) -> tuple[str, str] | None:
    """Why ``hello`` is not admitted, as (the log's reason, the REFUSE text); None: it is."""
    if not hello.user:
        return None if tokens.accepts(hello.token) else ("bad_token", BAD_TOKEN)
    if hello.kind != "embedded":
        return "user_not_embedded", "a replica node presents the cluster token, not a user"
    if login is None:
        return "no_users", "this primary admits no users on its replication port"
    if not await login(hello.user, hello.token):
        return "bad_user", "wrong user or password, or the user may not join (join-read-only)"
    return None

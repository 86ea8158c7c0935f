"""The permission each HTTP route needs, declared on its handler (:func:`needs`), and the
caller's identity on a request (:func:`identity`); :mod:`.auth` checks them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from litecluster.server.credentials import ANYONE, Identity

IDENTITY: web.RequestKey[Identity] = web.RequestKey("identity")

H = TypeVar("H", bound=Callable[..., Awaitable[web.StreamResponse]])


@dataclass(frozen=True)
class Permission:
    """What a route needs: every one of ``perms`` (``any_of``: one of them is enough, the
    handler checks the rest); a ``probe`` is open while ``http_open_probes`` is on."""

    perms: tuple[str, ...]
    any_of: bool = False
    probe: bool = False

    def allows(self, who: Identity) -> bool:
        checks = [who.may(p) for p in self.perms]
        return any(checks) if self.any_of else all(checks)

    def __str__(self) -> str:
        return (" or " if self.any_of else " and ").join(self.perms)


_ATTR = "__litecluster_permission__"


def needs(*perms: str, any_of: bool = False, probe: bool = False) -> Callable[[H], H]:
    """Declare the permission a route's handler needs (see :class:`Permission`)."""
    if not perms:
        raise ValueError("a route needs at least one permission")

    def mark(handler: H) -> H:
        setattr(handler, _ATTR, Permission(perms, any_of=any_of, probe=probe))
        return handler

    return mark


def permission_of(handler: Any) -> Permission | None:
    """The permission ``handler`` declared (None: it declared none)."""
    got = getattr(handler, _ATTR, None)
    return got if isinstance(got, Permission) else None


def identity(request: web.Request) -> Identity:
    """Who sent ``request`` (everyone may do everything while authentication is off)."""
    who: Identity = request.get(IDENTITY, ANYONE)
    return who

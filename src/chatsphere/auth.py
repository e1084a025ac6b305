"""Authentication: HS256 JWTs, and the development-only ``?userId=`` shortcut."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

import jwt

from .errors import ChatError, ErrorCode

_USER_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-@:]{0,127}$")


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller."""

    user_id: str
    roles: tuple[str, ...] = ()
    age_verified: bool = False


def valid_user_id(user_id: object) -> bool:
    return isinstance(user_id, str) and _USER_ID.match(user_id) is not None


class TokenAuthority:
    """Mints and verifies tokens. Claims: ``sub``, optional ``roles``, ``age_verified``, ``exp``."""

    def __init__(self, secret: str, *, issuer: str | None = None, allow_dev: bool = False) -> None:
        self._secret = secret
        self._issuer = issuer
        self.allow_dev = allow_dev

    def mint(
        self,
        user_id: str,
        *,
        roles: tuple[str, ...] = (),
        age_verified: bool = False,
        ttl_seconds: int = 86_400,
    ) -> str:
        if not valid_user_id(user_id):
            raise ChatError(ErrorCode.INVALID_PAYLOAD, f"invalid user id {user_id!r}")
        now = int(time.time())
        claims: dict[str, object] = {"sub": user_id, "iat": now, "exp": now + ttl_seconds}
        if roles:
            claims["roles"] = list(roles)
        if age_verified:
            claims["age_verified"] = True
        if self._issuer:
            claims["iss"] = self._issuer
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def verify(self, token: str) -> Principal:
        """The token's principal, or ``ChatError(unauthorized)`` saying why not."""
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                issuer=self._issuer,
                options={"require": ["sub", "exp"]},
            )
        except jwt.ExpiredSignatureError:
            raise ChatError(ErrorCode.UNAUTHORIZED, "token expired") from None
        except jwt.PyJWTError as exc:
            raise ChatError(ErrorCode.UNAUTHORIZED, f"invalid token: {exc}") from None
        sub = claims.get("sub")
        if not valid_user_id(sub):
            raise ChatError(ErrorCode.UNAUTHORIZED, "token subject is not a valid user id")
        roles = claims.get("roles") or []
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise ChatError(ErrorCode.UNAUTHORIZED, "token roles must be a list of strings")
        return Principal(str(sub), tuple(roles), claims.get("age_verified") is True)

    def authenticate(self, query: Mapping[str, str], authorization: str | None) -> Principal:
        """From ``?token=``, ``Authorization: Bearer``, or (dev mode only) ``?userId=``."""
        token = query.get("token")
        if not token and authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() == "bearer" and value:
                token = value.strip()
        if token:
            return self.verify(token)
        if self.allow_dev:
            user_id = query.get("userId")
            if valid_user_id(user_id):
                return Principal(str(user_id))
        raise ChatError(ErrorCode.UNAUTHORIZED, "missing token (use ?token=JWT or Bearer auth)")

"""auth.py: HS256 tokens and the development-only ``?userId=`` shortcut."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from chatsphere.auth import Principal, TokenAuthority, valid_user_id
from chatsphere.errors import ChatError, ErrorCode

SECRET = "unit-test-secret-0123456789abcdef-xyz"
OTHER_SECRET = "another-secret-0123456789abcdef-uvw"


@pytest.fixture
def authority() -> TokenAuthority:
    return TokenAuthority(SECRET)


def unauthorized(call: Any, *args: Any) -> ChatError:
    with pytest.raises(ChatError) as info:
        call(*args)
    assert info.value.code is ErrorCode.UNAUTHORIZED
    assert info.value.http_status == 401
    return info.value


def signed(claims: dict[str, Any], secret: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=algorithm)


def test_round_trip(authority: TokenAuthority) -> None:
    assert authority.verify(authority.mint("alice")) == Principal("alice", (), False)


def test_round_trip_with_roles_and_age_verification(authority: TokenAuthority) -> None:
    token = authority.mint("creator_1", roles=("creator", "admin"), age_verified=True)
    principal = authority.verify(token)
    assert principal == Principal("creator_1", ("creator", "admin"), True)


def test_minted_tokens_are_hs256_with_an_expiry(authority: TokenAuthority) -> None:
    token = authority.mint("alice", ttl_seconds=60)
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["sub"] == "alice"
    assert 0 < claims["exp"] - time.time() <= 60


def test_expired_token(authority: TokenAuthority) -> None:
    error = unauthorized(authority.verify, authority.mint("alice", ttl_seconds=-10))
    assert error.message == "token expired"


def test_wrong_secret() -> None:
    token = TokenAuthority(OTHER_SECRET).mint("alice")
    error = unauthorized(TokenAuthority(SECRET).verify, token)
    assert "invalid token" in error.message


def test_missing_sub(authority: TokenAuthority) -> None:
    unauthorized(authority.verify, signed({"exp": int(time.time()) + 60}))


def test_missing_exp(authority: TokenAuthority) -> None:
    unauthorized(authority.verify, signed({"sub": "alice"}))


@pytest.mark.parametrize("sub", ["", "has space", "x" * 200, "-leading-dash", "a/b"])
def test_invalid_user_id_in_sub(authority: TokenAuthority, sub: str) -> None:
    unauthorized(authority.verify, signed({"sub": sub, "exp": int(time.time()) + 60}))


def test_roles_must_be_strings(authority: TokenAuthority) -> None:
    exp = int(time.time()) + 60
    unauthorized(authority.verify, signed({"sub": "alice", "exp": exp, "roles": "admin"}))
    unauthorized(authority.verify, signed({"sub": "alice", "exp": exp, "roles": [1]}))


def test_age_verified_only_when_exactly_true(authority: TokenAuthority) -> None:
    exp = int(time.time()) + 60
    token = signed({"sub": "alice", "exp": exp, "age_verified": "yes"})
    assert authority.verify(token).age_verified is False


def test_alg_none_is_refused(authority: TokenAuthority) -> None:
    token = jwt.encode({"sub": "alice", "exp": int(time.time()) + 60}, None, algorithm="none")
    unauthorized(authority.verify, token)


def test_other_algorithms_with_the_right_secret_are_refused() -> None:
    secret = "k" * 64  # long enough for HS512 without a key-length warning
    token = signed({"sub": "alice", "exp": int(time.time()) + 60}, secret, algorithm="HS512")
    unauthorized(TokenAuthority(secret).verify, token)


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "e30.e30."])
def test_garbage_tokens(authority: TokenAuthority, token: str) -> None:
    unauthorized(authority.verify, token)


def test_issuer_is_checked_when_configured() -> None:
    issuing = TokenAuthority(SECRET, issuer="chatsphere")
    assert issuing.verify(issuing.mint("alice")).user_id == "alice"
    unauthorized(issuing.verify, TokenAuthority(SECRET).mint("alice"))


def test_mint_refuses_invalid_user_ids(authority: TokenAuthority) -> None:
    with pytest.raises(ChatError) as info:
        authority.mint("not valid")
    assert info.value.code is ErrorCode.INVALID_PAYLOAD


def test_user_id_rules() -> None:
    assert valid_user_id("alice")
    assert valid_user_id("user@example.com")
    assert valid_user_id("a" * 128)
    assert not valid_user_id("a" * 129)
    assert not valid_user_id(None)
    assert not valid_user_id(42)


# -- authenticate: where the credentials come from -------------------------------------


def test_token_from_the_query(authority: TokenAuthority) -> None:
    assert authority.authenticate({"token": authority.mint("alice")}, None).user_id == "alice"


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_token_from_a_bearer_header(authority: TokenAuthority, scheme: str) -> None:
    header = f"{scheme} {authority.mint('bob')}"
    assert authority.authenticate({}, header).user_id == "bob"


def test_query_token_wins_over_the_header(authority: TokenAuthority) -> None:
    principal = authority.authenticate(
        {"token": authority.mint("alice")}, f"Bearer {authority.mint('bob')}"
    )
    assert principal.user_id == "alice"


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwdw==", "tok"])
def test_missing_or_non_bearer_credentials(authority: TokenAuthority, header: str | None) -> None:
    error = unauthorized(authority.authenticate, {}, header)
    assert "missing token" in error.message


def test_a_bad_header_token_is_refused(authority: TokenAuthority) -> None:
    unauthorized(authority.authenticate, {}, "Bearer not-a-jwt")


def test_dev_user_id_refused_unless_allowed(authority: TokenAuthority) -> None:
    unauthorized(authority.authenticate, {"userId": "alice"}, None)


def test_dev_user_id_accepted_when_allowed() -> None:
    dev = TokenAuthority(SECRET, allow_dev=True)
    assert dev.authenticate({"userId": "alice"}, None) == Principal("alice")
    unauthorized(dev.authenticate, {"userId": "bad id"}, None)
    unauthorized(dev.authenticate, {}, None)


def test_dev_mode_still_verifies_tokens_first() -> None:
    dev = TokenAuthority(SECRET, allow_dev=True)
    principal = dev.authenticate({"token": dev.mint("bob"), "userId": "alice"}, None)
    assert principal.user_id == "bob"
    unauthorized(dev.authenticate, {"token": "forged", "userId": "alice"}, None)

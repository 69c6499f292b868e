"""Bearer JWTs: HS256 and RS256/ES256 from a JWKS (file or URL), claims checked, keys rotated."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.api.conftest import EdgeFactory
from tests.fixtures.asgi_server import serve_asgi
from tests.fixtures.credentials import AUDIENCE, ISSUER, auth_for_tests, caller_jwt
from tests.fixtures.waiting import eventually_true

BODY = {"messages": [{"role": "user", "content": "hi"}]}


class SigningKey:
    """A real private key and its public JWK, as an identity provider holds them."""

    def __init__(self, kid: str, alg: str) -> None:
        self.kid, self.alg = kid, alg
        if alg == "RS256":
            self.private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            public = json.loads(RSAAlgorithm.to_jwk(self.private.public_key()))
        else:
            self.private = ec.generate_private_key(ec.SECP256R1())
            public = json.loads(ECAlgorithm.to_jwk(self.private.public_key()))
        self.jwk = {**public, "kid": kid, "alg": alg, "use": "sig"}

    def token(self, sub: str = "u-jwks", ttl_s: int = 300, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + ttl_s}
        body.update(claims)
        return jwt.encode(body, self.private, algorithm=self.alg, headers={"kid": self.kid})


def write_jwks(path: Path, *keys: SigningKey) -> None:
    path.write_text(json.dumps({"keys": [key.jwk for key in keys]}))


async def post(url: str, token: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(
            f"{url}/v1/chat", json=BODY, headers={"Authorization": f"Bearer {token}"}
        )


@pytest.fixture(scope="module")
def keys() -> tuple[SigningKey, SigningKey, SigningKey]:
    return SigningKey("rsa-1", "RS256"), SigningKey("ec-1", "ES256"), SigningKey("rsa-2", "RS256")


async def test_a_jwks_with_two_keys_verifies_both_and_rotates_in_a_new_one(
    make_edge: EdgeFactory, tmp_path: Path, keys: tuple[SigningKey, ...]
) -> None:
    rsa_1, ec_1, rsa_2 = keys
    jwks = tmp_path / "jwks.json"
    write_jwks(jwks, rsa_1, ec_1)
    auth = auth_for_tests(jwks_file=jwks, jwks_refresh_min_s=1)
    async with make_edge(auth=auth) as edge:
        assert (await post(edge.url, rsa_1.token())).status_code == 202
        assert (await post(edge.url, ec_1.token())).status_code == 202
        # Signed by a key the provider has not published yet: refused.
        assert (await post(edge.url, rsa_2.token())).status_code == 401
        # The provider rotates: rsa-2 in, rsa-1 out. An unknown kid triggers a refresh.
        write_jwks(jwks, ec_1, rsa_2)

        async def rotated_in() -> bool:
            return (await post(edge.url, rsa_2.token())).status_code == 202

        await eventually_true(rotated_in, timeout_s=5)


async def test_a_jwks_url_is_fetched_and_cached(
    make_edge: EdgeFactory, keys: tuple[SigningKey, ...]
) -> None:
    rsa_1, ec_1, _ = keys
    fetches = []

    async def jwks(_: Request) -> JSONResponse:
        fetches.append(time.monotonic())
        return JSONResponse({"keys": [rsa_1.jwk, ec_1.jwk]})

    async with serve_asgi(Starlette(routes=[Route("/jwks", jwks)])) as idp:
        auth = auth_for_tests(jwks_url=f"{idp}/jwks", jwks_refresh_min_s=60)
        async with make_edge(auth=auth) as edge:
            for _ in range(3):
                assert (await post(edge.url, ec_1.token())).status_code == 202
            # A flood of made-up kids costs one fetch per refresh interval, not one per request.
            forged = [SigningKey(f"made-up-{i}", "ES256").token() for i in range(5)]
            statuses = [(await post(edge.url, token)).status_code for token in forged]
    assert statuses == [401] * 5
    assert len(fetches) <= 2


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"ttl_s": -120}, "expired"),
        ({"nbf": int(time.time()) + 600}, "not valid yet"),
        ({"iss": "https://evil.example"}, "ssuer"),
        ({"aud": "another-service"}, "Audience"),
        ({"sub": ""}, "sub"),
    ],
)
async def test_claims_are_checked(
    make_edge: EdgeFactory, claims: dict[str, Any], reason: str, tmp_path: Path,
    keys: tuple[SigningKey, ...],
) -> None:
    rsa_1 = keys[0]
    write_jwks(tmp_path / "jwks.json", rsa_1)
    async with make_edge(auth=auth_for_tests(jwks_file=tmp_path / "jwks.json")) as edge:
        response = await post(edge.url, rsa_1.token(**claims))
    assert response.status_code == 401
    assert reason in response.json()["error"]["message"]


async def test_a_small_clock_skew_is_tolerated(make_edge: EdgeFactory) -> None:
    async with make_edge() as edge:
        assert (await post(edge.url, caller_jwt(ttl_s=-5))).status_code == 202
        assert (await post(edge.url, caller_jwt(ttl_s=-120))).status_code == 401


async def test_algorithm_tricks_are_refused(
    make_edge: EdgeFactory, tmp_path: Path, keys: tuple[SigningKey, ...]
) -> None:
    rsa_1 = keys[0]
    write_jwks(tmp_path / "jwks.json", rsa_1)
    claims = jwt.decode(rsa_1.token(), options={"verify_signature": False})
    unsigned = jwt.encode(claims, None, algorithm="none")
    # HS256 "signed" with the provider's public key as the secret: the classic confusion.
    public_pem = rsa_1.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    confused = hs256_by_hand({"alg": "HS256", "kid": rsa_1.kid, "typ": "JWT"}, claims, public_pem)
    async with make_edge(auth=auth_for_tests(jwks_file=tmp_path / "jwks.json")) as edge:
        assert (await post(edge.url, unsigned)).status_code == 401
        assert (await post(edge.url, confused)).status_code == 401
        assert (await post(edge.url, rsa_1.token())).status_code == 202


def hs256_by_hand(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """What an attacker would build; PyJWT itself refuses to HMAC with a PEM key."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


async def test_a_stream_token_is_never_a_caller_even_under_a_shared_secret(
    make_edge: EdgeFactory,
) -> None:
    """Found in review: with one secret for both roles and no iss/aud set, a leaked read token
    verified as a caller JWT. Production mode now refuses that configuration; the verifier
    refuses the token whatever the configuration."""
    shared = "s" * 40
    auth = auth_for_tests(jwt_hs256_secret=shared, jwt_issuer=None, jwt_audience=None,
                          stream_token_keys={"k": shared}, stream_token_kid="k")
    assert any("JWT_HS256_SECRET" in item for item in auth.unsafe_settings())
    async with make_edge(mode="development", auth=auth) as edge:
        read_token = edge.token("s-shared", user_id="alice")
        response = await post(edge.url, read_token)
    assert response.status_code == 401
    assert "stream token" in response.json()["error"]["message"]


async def test_a_jwks_with_broken_or_symmetric_entries_keeps_its_good_keys(
    make_edge: EdgeFactory, tmp_path: Path, keys: tuple[SigningKey, ...]
) -> None:
    rsa_1 = keys[0]
    jwks = tmp_path / "jwks.json"
    broken = [
        {"kty": "RSA", "kid": "bad-none", "alg": "none", "n": "AQAB", "e": "AQAB"},
        {"kty": "oct", "kid": "shared", "k": "c2hhcmVkLXNlY3JldC1zaGFyZWQtc2VjcmV0LXNoYXJlZA"},
        {"kty": "EC", "kid": "truncated"},
        "not even an object",
    ]
    jwks.write_text(json.dumps({"keys": [*broken, rsa_1.jwk]}))
    async with make_edge(auth=auth_for_tests(jwks_file=jwks)) as edge:
        assert (await post(edge.url, rsa_1.token())).status_code == 202
        forged = caller_jwt(secret="shared-secret-shared-secret-shared")
        assert (await post(edge.url, forged)).status_code == 401

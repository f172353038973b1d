"""Tokens and GitHub Apps: who a request comes from, and installation tokens for app JWTs."""

from __future__ import annotations

import functools
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from prgen.testing.fake_github.model import ApiError

ANONYMOUS = "prgen-bot"  # who writes when no token is registered
TOKEN_LIFETIME = 3600.0
JWT_MAX_LIFETIME = 600  # GitHub refuses app JWTs that expire more than ten minutes ahead
INSTALLATION_PERMISSIONS = {
    "metadata": "read",
    "pull_requests": "read",
    "statuses": "write",
    "deployments": "write",
    "issues": "write",
    "checks": "write",
    "administration": "read",  # reading branch protection; `add_app(permissions=...)` drops it
}


@dataclass(frozen=True)
class AppKey:
    """A GitHub App's RSA key pair, PEM-encoded: the private half for prgen, the public for
    the fake (`FakeGitHub.add_app`)."""

    private_pem: str
    public_pem: str


@functools.cache
def app_key(name: str = "app") -> AppKey:
    """A key pair for tests, made once per `name` and process (2048-bit RSA takes a while)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return AppKey(private.decode(), public.decode())


@dataclass(frozen=True)
class _App:
    app_id: int
    public_key: str
    login: str  # "<slug>[bot]"
    permissions: Mapping[str, str]  # what the installation was granted

    @property
    def slug(self) -> str:
        return self.login.removesuffix("[bot]")


@dataclass(frozen=True)
class _Token:
    login: str
    expires: float | None  # wall-clock epoch seconds
    app: _App | None = None  # an installation token's app; None: a personal token
    permissions: Mapping[str, str] | None = None  # an installation token's grants


def _credential(authorization: str | None) -> str | None:
    scheme, _, value = (authorization or "").strip().partition(" ")
    if scheme.lower() in ("token", "bearer") and value.strip():
        return value.strip()
    return None


def bad_credentials() -> ApiError:
    return ApiError(401, "Bad credentials")


class Credentials:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, _Token] = {}
        self._apps: dict[int, _App] = {}  # by installation id

    def add_token(
        self,
        token: str,
        login: str,
        lifetime: float | None = None,
        app: _App | None = None,
        permissions: Mapping[str, str] | None = None,
    ) -> None:
        if not token:
            raise ValueError("a token must not be empty")
        expires = None if lifetime is None else time.time() + lifetime
        with self._lock:
            self._tokens[token] = _Token(login, expires, app, permissions)

    def add_app(
        self,
        app_id: int,
        public_key_pem: str,
        installation_id: int,
        login: str,
        permissions: Mapping[str, str] | None = None,
    ) -> None:
        granted = dict(INSTALLATION_PERMISSIONS if permissions is None else permissions)
        with self._lock:
            self._apps[installation_id] = _App(app_id, public_key_pem, login, granted)

    def login(self, authorization: str | None) -> str:
        """Who sent the request; 401 once tokens are in use and this one is not known."""
        with self._lock:
            if not self._tokens and not self._apps:
                return ANONYMOUS
            token = self._tokens.get(_credential(authorization) or "")
        if token is None or (token.expires is not None and token.expires < time.time()):
            raise bad_credentials()
        return token.login

    def installation(self, authorization: str | None) -> tuple[int, str] | None:
        """The app id and slug of an installation token's app; None for any other credential
        (call `login` first: it refuses unknown and expired ones)."""
        with self._lock:
            token = self._tokens.get(_credential(authorization) or "")
        if token is None or token.app is None:
            return None
        return token.app.app_id, token.app.slug

    def grants(self, authorization: str | None) -> frozenset[str] | None:
        """The permissions (names) of an installation token; None for any other credential."""
        with self._lock:
            token = self._tokens.get(_credential(authorization) or "")
        if token is None or token.permissions is None:
            return None
        return frozenset(token.permissions)

    def app(self, authorization: str | None) -> tuple[int, str]:
        """GET /app: the id and slug of the app whose RS256 JWT signed the request."""
        encoded = _credential(authorization)
        if encoded is None:
            raise ApiError(401, "A JSON web token could not be decoded")
        try:
            issuer = str(jwt.decode(encoded, options={"verify_signature": False}).get("iss"))
        except jwt.PyJWTError as exc:
            raise ApiError(401, f"A JSON web token could not be decoded: {exc}") from None
        with self._lock:
            app = next((a for a in self._apps.values() if str(a.app_id) == issuer), None)
        if app is None:
            raise ApiError(401, "A JSON web token could not be decoded: no such app")
        self._verify(app, encoded)
        return app.app_id, app.slug

    def mint(self, installation_id: int, authorization: str | None, body: Any) -> dict[str, Any]:
        """POST /app/installations/{id}/access_tokens, authenticated by the app's RS256 JWT."""
        with self._lock:
            app = self._apps.get(installation_id)
        encoded = _credential(authorization)
        if encoded is None:
            raise ApiError(401, "A JSON web token could not be decoded")
        if app is None:
            raise ApiError(404, "Not Found")
        self._verify(app, encoded)
        requested = body.get("permissions") if isinstance(body, dict) else None
        if isinstance(requested, dict) and requested:
            beyond = sorted(set(requested) - set(app.permissions))
            if beyond:
                raise ApiError(
                    422, f"The permissions requested are not granted to this installation: {beyond}"
                )
            permissions = {str(name): str(level) for name, level in requested.items()}
        else:
            permissions = dict(app.permissions)
        token = "ghs_" + secrets.token_hex(18)
        self.add_token(token, app.login, TOKEN_LIFETIME, app, permissions)
        expires = datetime.fromtimestamp(time.time() + TOKEN_LIFETIME, UTC)
        return {
            "token": token,
            "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "permissions": permissions,
            "repository_selection": "all",
        }

    @staticmethod
    def _verify(app: _App, encoded: str) -> None:
        try:
            claims = jwt.decode(
                encoded,
                app.public_key,
                algorithms=["RS256"],
                options={"require": ["iat", "exp", "iss"]},
                leeway=60,
            )
        except jwt.PyJWTError as exc:
            raise ApiError(401, f"A JSON web token could not be decoded: {exc}") from None
        if str(claims["iss"]) != str(app.app_id):
            raise ApiError(401, f"A JSON web token could not be decoded: iss is not {app.app_id}")
        if claims["exp"] - time.time() > JWT_MAX_LIFETIME + 60:
            raise ApiError(401, "'Expiration time' claim ('exp') is too far in the future")

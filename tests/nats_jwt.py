"""NATS decentralized (JWT) authentication for tests: an operator, its accounts and users
minted with ``nkeys``, a server configuration trusting them, and ``.creds`` files.

The JWTs are what ``nsc`` writes (nats-io/jwt v2): a header ``{"typ": "JWT", "alg":
"ed25519-nkey"}``, claims with ``jti`` the base32 SHA-512/256 of the claims without it,
base64url without padding, signed by the issuer's seed over ``header.claims``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nkeys  # type: ignore[import-untyped]

#: No limit (nats-io/jwt's NoLimit).
UNLIMITED = -1
#: An account's limits: everything open, JetStream included (a JWT account without
#: JetStream limits has no JetStream: ``mem_storage`` / ``disk_storage`` of 0).
ACCOUNT_LIMITS: dict[str, Any] = {
    "subs": UNLIMITED,
    "data": UNLIMITED,
    "payload": UNLIMITED,
    "imports": UNLIMITED,
    "exports": UNLIMITED,
    "wildcards": True,
    "conn": UNLIMITED,
    "leaf": UNLIMITED,
    "mem_storage": UNLIMITED,
    "disk_storage": UNLIMITED,
    "streams": UNLIMITED,
    "consumer": UNLIMITED,
}
#: The limits that turn JetStream on.
JETSTREAM_LIMITS = ("mem_storage", "disk_storage", "streams", "consumer")
#: The system account's: no JetStream.
SYSTEM_LIMITS = {k: v for k, v in ACCOUNT_LIMITS.items() if k not in JETSTREAM_LIMITS}


@dataclass(frozen=True)
class Identity:
    """An nkey pair: its seed (secret) and public key (``O…``, ``A…``, ``U…``)."""

    seed: bytes

    @classmethod
    def new(cls, prefix: int) -> Identity:
        return cls(nkeys.encode_seed(os.urandom(32), prefix))

    @property
    def public(self) -> str:
        return str(nkeys.from_seed(self.seed).public_key.decode())

    def sign(self, data: bytes) -> bytes:
        return bytes(nkeys.from_seed(self.seed).sign(data))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(issuer: Identity, subject: str, name: str, nats: dict[str, Any]) -> str:
    """A JWT for ``subject`` signed by ``issuer`` (nats-io/jwt v2 encoding)."""
    header = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    claims: dict[str, Any] = {
        "iat": int(time.time()),
        "iss": issuer.public,
        "name": name,
        "sub": subject,
    }
    digest = hashlib.new("sha512_256", json.dumps(claims, separators=(",", ":")).encode())
    claims = {"jti": base64.b32encode(digest.digest()).rstrip(b"=").decode(), **claims}
    claims["nats"] = {**nats, "version": 2}
    payload = _b64(json.dumps(claims).encode())
    signed = f"{header}.{payload}"
    return f"{signed}.{_b64(issuer.sign(signed.encode()))}"


def account_jwt(operator: Identity, account: Identity, name: str, limits: dict[str, Any]) -> str:
    return jwt(
        operator,
        account.public,
        name,
        {"type": "account", "limits": limits, "default_permissions": {"pub": {}, "sub": {}}},
    )


def user_jwt(account: Identity, user: Identity, name: str) -> str:
    limits = {"subs": UNLIMITED, "data": UNLIMITED, "payload": UNLIMITED}
    return jwt(account, user.public, name, {"type": "user", "pub": {}, "sub": {}, **limits})


def creds_text(user_token: str, user: Identity) -> str:
    """A ``.creds`` file as ``nsc`` writes it: the user's JWT and its seed."""
    return (
        "-----BEGIN NATS USER JWT-----\n"
        f"{user_token}\n"
        "------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n"
        "NKEYs are sensitive and should be treated as secrets.\n\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{user.seed.decode()}\n"
        "------END USER NKEY SEED------\n\n"
        "*************************************************************\n"
    )


@dataclass(frozen=True)
class Operator:
    """An operator with a system account and an application account (JetStream on)."""

    operator: Identity
    system: Identity
    account: Identity

    @classmethod
    def new(cls) -> Operator:
        return cls(
            Identity.new(nkeys.PREFIX_BYTE_OPERATOR),
            Identity.new(nkeys.PREFIX_BYTE_ACCOUNT),
            Identity.new(nkeys.PREFIX_BYTE_ACCOUNT),
        )

    def server_config(self, folder: Path) -> str:
        """Configuration text for ``nats-server``: trust this operator, and know its two
        accounts from memory (``resolver: MEMORY``); the operator JWT is written to
        ``folder``."""
        operator = folder / "operator.jwt"
        operator.write_text(
            jwt(self.operator, self.operator.public, "orchestrace-test", {"type": "operator"})
            + "\n"
        )
        system = account_jwt(self.operator, self.system, "SYS", SYSTEM_LIMITS)
        account = account_jwt(self.operator, self.account, "APP", ACCOUNT_LIMITS)
        return (
            f'operator: "{operator}"\n'
            f"system_account: {self.system.public}\n"
            "resolver: MEMORY\n"
            "resolver_preload: {\n"
            f"  {self.system.public}: {system}\n"
            f"  {self.account.public}: {account}\n"
            "}\n"
        )

    def creds(self, path: Path, *, account: Identity | None = None, name: str = "app") -> Path:
        """A new user of ``account`` (default: the application account) as a ``.creds``
        file at ``path``."""
        user = Identity.new(nkeys.PREFIX_BYTE_USER)
        path.write_text(creds_text(user_jwt(account or self.account, user, name), user))
        return path

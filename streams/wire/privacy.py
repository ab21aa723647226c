"""Keyed pseudonyms of user ids (HMAC-SHA256), applied to messages before they are produced.

The same id under the same key always gives the same pseudonym, so a user's events still share
a key, a partition and a state entry, and ``vidrec forget USER`` still reaches them; without the
key a pseudonym cannot be turned back into the id, nor guessed from a list of candidate ids.
"""

from __future__ import annotations

import hashlib
import hmac

from pydantic import SecretStr

from schemas import ForgetUser, MessageBase, Recommendations, UserEvent
from streams.wire.settings import PrivacySettings

PREFIX = "p-"
HEX_CHARS = 32  # 128 bits of the HMAC: collisions need ~2**64 users


def pseudonym(user_id: str, key: bytes) -> str:
    """``"p-"`` and the first 32 hex digits of ``HMAC-SHA256(key, user_id)``.

    The prefix marks an id as pseudonymous in logs and topics; truncation keeps keys short while
    staying far from collisions.
    """
    digest = hmac.new(key, user_id.encode("utf-8"), hashlib.sha256).hexdigest()
    return PREFIX + digest[:HEX_CHARS]


class Pseudonymiser:
    """Replaces the ``user_id`` of every message that carries one by its pseudonym.

    Parameters
    ----------
    key
        The HMAC key; a ``SecretStr`` is unwrapped here and kept only as bytes.
    """

    __slots__ = ("_key",)

    def __init__(self, key: SecretStr | str | bytes) -> None:
        if isinstance(key, SecretStr):
            key = key.get_secret_value()
        if isinstance(key, str):
            key = key.encode("utf-8")
        if not key:
            raise ValueError("the pseudonymisation key must not be empty")
        self._key = key

    @classmethod
    def from_settings(cls, settings: PrivacySettings | None = None) -> Pseudonymiser | None:
        """The pseudonymiser ``VIDREC_PSEUDONYMISE_KEY`` asks for, or None when it is unset."""
        settings = settings if settings is not None else PrivacySettings()
        if settings.pseudonymise_key is None:
            return None
        return cls(settings.pseudonymise_key)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key=**********)"

    def user_id(self, user_id: str) -> str:
        """The pseudonym of one id (what an operator looks up to find a user's records)."""
        return pseudonym(user_id, self._key)

    def apply(self, msg: MessageBase) -> MessageBase:
        """``msg`` with its ``user_id`` pseudonymised; a video (no user id) is returned as is."""
        if isinstance(msg, UserEvent | ForgetUser | Recommendations):
            return msg.model_copy(update={"user_id": self.user_id(msg.user_id)})
        return msg

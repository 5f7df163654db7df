"""A refused federation: one line naming the check that failed.

Each check has a short name (``exp``, ``aud``, ``issuer``, ``signature``, ``alg``,
``policy``, ``protected-ref``, ``replay``, …) that is the refusal's first words,
the ``check`` of its ``federation.refused`` audit event, and what tests assert.
"""

from __future__ import annotations

from kontext.common import wire
from kontextd.errors import ApiError

FORMAT = "format"  # not a compact JWS
ALG = "alg"  # an algorithm this platform does not sign with (none, HS256, …)
ISSUER = "issuer"  # an issuer kontext does not believe
SIGNATURE = "signature"  # no key, or the signature does not verify
ISS = "iss"
AUD = "aud"
EXP = "exp"
NBF = "nbf"
IAT = "iat"
CLAIMS = "claims"  # a platform claim missing, malformed or inconsistent
REPLAY = "replay"  # this token already started a session
PROTECTED_REF = "protected-ref"  # the repository's policy is read only for protected refs
PROOF = "proof"  # the policy's git objects do not hash to the commit the token names
POLICY = "policy"  # no trust rule names this workload


class Refused(ApiError):
    """The token or its workload failed ``check``; nothing was changed (but the audit)."""

    def __init__(self, check: str, detail: str) -> None:
        super().__init__(wire.FEDERATION_REFUSED, f"federation refused ({check}): {detail}")
        self.check = check
        self.detail = detail

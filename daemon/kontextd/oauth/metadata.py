"""What the embedded issuer says about itself: RFC 8414 §2 and OIDC Discovery §3.

One function, so every HTTP binding (``/.well-known/openid-configuration`` and
``/.well-known/oauth-authorization-server``) serves the same document. The
``issuer`` is the one exact string used in every token and every redirect.
"""

from __future__ import annotations

from typing import Any

from kontextd.oauth import authorize
from kontextd.oauth.issue import ID_TOKEN_ALGS
from kontextd.oauth.token import EXCHANGE


def metadata(issuer: str, public_clients: bool = True) -> dict[str, Any]:
    """The discovery document for ``issuer``; ``public_clients`` is ``mcp.clients``
    allowing MCP clients to register and authorize without pushing."""
    meta = _common(issuer)
    if public_clients:
        # MCP clients (public, RFC 6749 §2.1) register themselves (RFC 7591) or name
        # a Client ID Metadata Document, hold no secret, and send their request
        # through the browser: PAR is no longer required of every client — the
        # CLI's own clients (``kontext``, ``agent:NAME``) must still push theirs.
        meta["require_pushed_authorization_requests"] = False
        meta["registration_endpoint"] = f"{issuer}/register"
        meta["client_id_metadata_document_supported"] = True
        meta["token_endpoint_auth_methods_supported"] = [
            *meta["token_endpoint_auth_methods_supported"],
            "none",
        ]
    return meta


def _common(issuer: str) -> dict[str, Any]:
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "pushed_authorization_request_endpoint": f"{issuer}/par",
        "require_pushed_authorization_requests": True,
        # OIDC Discovery §3: both default to a value we do not mean when omitted
        # (request_uri_parameter_supported defaults to true). We never fetch a
        # request object by reference (OIDC Core §6.2) nor take one by value; the
        # request_uri our own PAR endpoint hands out is RFC 9126's, announced above.
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "token_endpoint": f"{issuer}/token",
        "revocation_endpoint": f"{issuer}/revoke",
        "introspection_endpoint": f"{issuer}/introspect",
        "jwks_uri": f"{issuer}/jwks.json",
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["none"],
        # RFC 8707: a token is bound to the resource it was asked for.
        "resource_indicators_supported": True,
        "introspection_endpoint_auth_methods_supported": ["none"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", EXCHANGE],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": True,
        "scopes_supported": list(authorize.LOGIN_SCOPES),
        "subject_types_supported": ["public"],
        # OIDC Discovery §3: RS256 MUST be listed. ES256 is the default; a client asks
        # for RS256 with id_token_signed_response_alg (see kontextd.oauth.issue).
        "id_token_signing_alg_values_supported": list(ID_TOKEN_ALGS),
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "name"],
    }

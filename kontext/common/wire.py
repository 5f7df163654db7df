"""The control API's wire format, shared by the CLI and the daemon.

Requests and responses are JSON over HTTP/1.1 on the Unix socket. Errors are
``{"error": {"code": CODE, "message": ONE_LINE}}`` with one of the codes below;
the CLI turns each code into an exit status (see ``kontext_cli.errors``).
"""

from __future__ import annotations

API_PREFIX = "/v1"

# Error codes, with the HTTP status the daemon sends them under.
INVALID = "invalid"  # 400: a parameter or body is malformed
FORBIDDEN = "forbidden"  # 403: the peer is not this OS user
DENIED = "denied"  # 403: the request path refused a credential
CONSENT_REQUIRED = "consent_required"  # 403: only the user's consent is missing
NOT_FOUND = "not_found"  # 404: no such agent, credential or route
NOT_ALLOWED = "not_allowed"  # 405: the route exists, the method does not
CONFLICT = "conflict"  # 409: already exists
TOO_LARGE = "too_large"  # 413: body over the limit
MISDIRECTED = "misdirected"  # 421: Host is not one of our loopback names and port
SECRETS = "secrets"  # 503: secret storage unavailable or refused
CONFIG = "config"  # 503: the config file is invalid
INTERNAL = "internal"  # 500: a bug; details only in the daemon log
UPSTREAM = "upstream"  # 502: an integration's provider refused, failed, or is not connected
STORAGE = "storage"  # 503: the database cannot be written (full, read-only, removed, replaced)
AGENT_REFUSED = "agent_refused"  # 403: the caller runs inside an agent's exec (kernel facts)
FEDERATION_REFUSED = "federation_refused"  # 403: a CI token failed a check (the line names it)

HTTP_STATUS = {
    INVALID: 400,
    FORBIDDEN: 403,
    DENIED: 403,
    CONSENT_REQUIRED: 403,
    NOT_FOUND: 404,
    NOT_ALLOWED: 405,
    CONFLICT: 409,
    TOO_LARGE: 413,
    MISDIRECTED: 421,
    SECRETS: 503,
    CONFIG: 503,
    INTERNAL: 500,
    UPSTREAM: 502,
    STORAGE: 503,
    AGENT_REFUSED: 403,
    FEDERATION_REFUSED: 403,
}

MAX_BODY = 64 * 1024

# kontextd's exit statuses: the same numbers as the CLI's table (kontext_cli.errors,
# README "Exit status"; tests/test_exit_codes.py holds them together). The CLI's
# starter turns each into its own error instead of "daemon unavailable".
EXIT_BUG = 1  # an unexpected error at start-up (the daemon log has the traceback)
EXIT_ALREADY_RUNNING = 4  # another kontextd serves this KONTEXT_HOME (Conflict)
EXIT_CANNOT_START = 5  # an unsafe directory, an unusable database or port (DaemonUnavailable)
EXIT_CONFIG_INVALID = 6  # config.toml is invalid (ConfigInvalid)
EXIT_SECRETS = 7  # no secret storage may be used (SecretsUnavailable)
EXIT_FOREIGN = 9  # a directory it needs belongs to another OS user (Forbidden)

# Environment variables set for an exec'd child (besides integration variables).
ENV_TOKEN = "KONTEXT_TOKEN"  # noqa: S105 - a variable name, not a secret
ENV_AGENT = "KONTEXT_AGENT"
ENV_EXPIRES = "KONTEXT_TOKEN_EXPIRES"
ENV_JTI = "KONTEXT_CREDENTIAL_ID"
ENV_URL = "KONTEXT_URL"  # the loopback issuer: RFC 8693 exchange of the child's own token
KONTEXT_ENV = (ENV_TOKEN, ENV_AGENT, ENV_EXPIRES, ENV_JTI, ENV_URL)
# A CI job's own identity: whoever holds these can obtain the job's OIDC token (for any
# audience) or holds one. Neither kontextd nor an agent's process inherits them.
CI_IDENTITY_ENV = (
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",  # GitHub Actions: asks for the job's OIDC token
    "ACTIONS_ID_TOKEN_REQUEST_URL",
    "KONTEXT_ID_TOKEN",  # GitLab id_tokens, as docs/ci/gitlab-ci.yml names it
    "CI_JOB_JWT",  # GitLab's older, deprecated job tokens
    "CI_JOB_JWT_V1",
    "CI_JOB_JWT_V2",
)

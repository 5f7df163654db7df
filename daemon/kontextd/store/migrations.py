"""Numbered schema migrations, each applied once and recorded in ``schema_migrations``."""

from __future__ import annotations

import sqlite3

# Each migration is one SQL script, run inside one transaction with its record.
M1_SPINE = """
CREATE TABLE agents (
    name TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    max_ttl INTEGER NOT NULL,
    created_at REAL NOT NULL,
    disabled_at REAL,
    disabled_reason TEXT
);
CREATE TABLE agent_scopes (
    agent TEXT NOT NULL REFERENCES agents(name) ON DELETE CASCADE,
    scope TEXT NOT NULL,
    PRIMARY KEY (agent, scope)
);
CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    public_jwk TEXT NOT NULL,
    storage TEXT NOT NULL,
    created_at REAL NOT NULL,
    retired_at REAL
);
CREATE TABLE credentials (
    jti TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    user TEXT NOT NULL,
    scopes TEXT NOT NULL,
    audience TEXT NOT NULL,
    target TEXT,
    kid TEXT NOT NULL REFERENCES signing_keys(kid),
    issued_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('live', 'revoked', 'expired')),
    ended_at REAL,
    end_reason TEXT,
    wrapper_pid INTEGER,
    child_pid INTEGER,
    child_start TEXT
);
CREATE INDEX credentials_by_status ON credentials(status, expires_at);
CREATE INDEX credentials_by_agent ON credentials(agent, status);
CREATE TABLE audit_events (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    event TEXT NOT NULL,
    agent TEXT,
    body TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_by_agent ON audit_events(agent, id);
-- The audit log is append-only: the store never updates or deletes a row.
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit_events
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit_events
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""

# Signed checkpoints over the audit chain (and anchors left by pruning).
M2_AUDIT_CHECKPOINTS = """
CREATE TABLE audit_checkpoints (
    id INTEGER PRIMARY KEY,
    event_id INTEGER NOT NULL,
    event_hash TEXT NOT NULL,
    ts REAL NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('checkpoint', 'anchor')),
    kid TEXT NOT NULL,
    jws TEXT NOT NULL
);
CREATE INDEX audit_checkpoints_by_event ON audit_checkpoints(event_id);
CREATE INDEX audit_by_event ON audit_events(event, id);
CREATE INDEX audit_by_ts ON audit_events(ts);
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
    BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
    BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;
"""

# Login sessions, agent consent grants, and the embedded authorization server's
# tokens (refresh tokens only as SHA-256 hashes: only comparison is needed).
M3_LOGIN_CONSENT = """
CREATE TABLE login_sessions (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    display_name TEXT,
    issuer TEXT NOT NULL,
    client_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    external INTEGER NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    checked_at REAL NOT NULL,
    ended_at REAL,
    end_reason TEXT
);
CREATE TABLE consent_grants (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    user TEXT NOT NULL,
    agent TEXT NOT NULL,
    scopes TEXT NOT NULL,
    target TEXT,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    revoked_at REAL,
    revoke_reason TEXT
);
CREATE INDEX consent_grants_by_agent ON consent_grants(agent, user);
CREATE TABLE oauth_tokens (
    jti TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('access', 'refresh')),
    token_hash TEXT UNIQUE,
    family TEXT NOT NULL,
    client_id TEXT NOT NULL,
    user TEXT NOT NULL,
    scopes TEXT NOT NULL,
    parent TEXT,
    issued_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    rotated_at REAL,
    revoked_at REAL,
    revoke_reason TEXT
);
CREATE INDEX oauth_tokens_by_family ON oauth_tokens(family);
"""

# Signing keys by algorithm (an RS256 key signs ID tokens for clients that ask,
# OIDC Discovery §3), published ahead of use (``signs_from``), and retired in two
# recorded steps: ``retiring_at`` (it stopped signing; its private half is still
# to be deleted) then ``retired_at`` (deleted). A crash between the steps is
# finished at the next start (``tokens/keys.py``).
M4_KEY_LIFECYCLE = """
ALTER TABLE signing_keys ADD COLUMN alg TEXT NOT NULL DEFAULT 'ES256';
ALTER TABLE signing_keys ADD COLUMN signs_from REAL;
ALTER TABLE signing_keys ADD COLUMN retiring_at REAL;
UPDATE signing_keys SET retiring_at = retired_at WHERE retired_at IS NOT NULL;
"""
# One notion of a credential (DESIGN.md rule 8): tokens minted for an agent by an
# RFC 8693 exchange or a consent code live in ``credentials`` beside exec's, with
# how they were minted, who asked, their parent and the grant that allowed them.
# Agent tokens the issuer recorded in ``oauth_tokens`` before this escaped
# revocation: they end here.
M5_ONE_CREDENTIAL = """
ALTER TABLE credentials ADD COLUMN kind TEXT NOT NULL DEFAULT 'exec';
ALTER TABLE credentials ADD COLUMN client_id TEXT;
ALTER TABLE credentials ADD COLUMN parent TEXT;
ALTER TABLE credentials ADD COLUMN grant_id TEXT;
ALTER TABLE credentials ADD COLUMN act TEXT;
CREATE INDEX credentials_by_parent ON credentials(parent) WHERE parent IS NOT NULL;
CREATE INDEX credentials_by_grant ON credentials(grant_id) WHERE grant_id IS NOT NULL;
UPDATE oauth_tokens SET revoked_at = strftime('%s','now'),
    revoke_reason = 'agent tokens now live in credentials (migration 5)'
    WHERE kind = 'access' AND client_id != 'kontext' AND revoked_at IS NULL;
"""

# The local account's sessions become rows of their own (``local`` = 1), so that
# grants made before ``login`` end with that session and never come back after
# ``logout`` (a new local session begins), and the audit tells the sessions apart.
# Sessions are no longer deleted at logout: they end.
M6_LOCAL_SESSIONS = """
ALTER TABLE login_sessions ADD COLUMN local INTEGER NOT NULL DEFAULT 0;
"""

# Whether an agent's confined exec may reach the session D-Bus (the Secret Service).
M7_AGENT_SESSION_BUS = """
ALTER TABLE agents ADD COLUMN session_bus INTEGER NOT NULL DEFAULT 0;
"""

# Public OAuth clients (MCP clients) that registered themselves (RFC 7591), and
# which client and resource a consent grant was approved for: an MCP client's
# grant rests on its own approval, its refresh tokens die with it.
M8_PUBLIC_CLIENTS = """
CREATE TABLE oauth_clients (
    client_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    redirect_uris TEXT NOT NULL,
    grant_types TEXT NOT NULL,
    client_uri TEXT,
    software_id TEXT,
    registered_by INTEGER,
    created_at REAL NOT NULL,
    used_at REAL
);
ALTER TABLE consent_grants ADD COLUMN client_id TEXT;
ALTER TABLE consent_grants ADD COLUMN client_name TEXT;
ALTER TABLE consent_grants ADD COLUMN resource TEXT;
"""

# CI federation (``kontext login --federate``): a login session is a browser's or a
# CI workload's (``kind``), and a workload's session keeps its claims (``workload``,
# JSON) for every audit event. ``federated_sessions`` holds the trust rules that
# named the workload when it logged in, and ``federation_tokens`` the CI tokens
# already used (single use, kept until they expire; never the token itself).
M9_CI_FEDERATION = """
ALTER TABLE login_sessions ADD COLUMN kind TEXT NOT NULL DEFAULT 'browser';
ALTER TABLE login_sessions ADD COLUMN workload TEXT;
CREATE TABLE federated_sessions (
    session_id TEXT PRIMARY KEY,
    platform TEXT NOT NULL,
    rules TEXT NOT NULL,
    sources TEXT NOT NULL,
    token_expires_at REAL NOT NULL
);
CREATE TABLE federation_tokens (
    key TEXT PRIMARY KEY,
    expires_at REAL NOT NULL
);
"""

MIGRATIONS: list[str] = [
    M1_SPINE,
    M2_AUDIT_CHECKPOINTS,
    M3_LOGIN_CONSENT,
    M4_KEY_LIFECYCLE,
    M5_ONE_CREDENTIAL,
    M6_LOCAL_SESSIONS,
    M7_AGENT_SESSION_BUS,
    M8_PUBLIC_CLIENTS,
    M9_CI_FEDERATION,
]


class SchemaTooNew(RuntimeError):
    """The database was written by a newer kontextd."""


def apply(conn: sqlite3.Connection) -> int:
    """Bring the schema up to date; returns the resulting version."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, applied_at REAL)"
    )
    current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0]
    if current > len(MIGRATIONS):
        raise SchemaTooNew(
            f"schema version {current} is newer than this kontextd knows ({len(MIGRATIONS)}); "
            "upgrade kontext"
        )
    for version, script in enumerate(MIGRATIONS[current:], start=current + 1):
        # executescript commits any open transaction first, so the BEGIN lives
        # inside the script: the schema change and its record land together.
        try:
            conn.executescript(
                f"BEGIN IMMEDIATE;\n{script}\nINSERT INTO schema_migrations "
                f"VALUES ({version}, strftime('%s','now'));\nCOMMIT;"
            )
        except sqlite3.Error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return len(MIGRATIONS)

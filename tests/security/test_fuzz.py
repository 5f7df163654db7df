"""Bad input at volume: hypothesis feeds every parser garbage and hostile look-alikes.

- control-API JSON bodies and query strings, over the real Unix socket;
- the issuer's form parameters (/par, /token, /revoke, /introspect, /authorize), over
  loopback HTTP, with and without the real client secret;
- config.toml and Cedar policy files, through the daemon's own loaders;
- CLI arguments, through ``kontext_cli.main.main`` in-process.

Never a 500 or a traceback, never a dead daemon: after each parser the daemon
still answers ``/v1/status`` and its log holds no "internal error".

CI runs ``KONTEXT_FUZZ_EXAMPLES`` (default 300) cases per parser;
``KONTEXT_FUZZ_EXAMPLES=10000`` is the dedicated long run. With
``KONTEXT_FUZZ_REPORT=FILE`` the number of cases each parser ran is written there.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Kontext, short_home

EXAMPLES = int(os.environ.get("KONTEXT_FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # nothing written into the repository
    suppress_health_check=list(HealthCheck),
)
CASES: collections.Counter[str] = collections.Counter()

# Hostile strings: separators, NULs, look-alikes, bidi overrides, injections, huge.
NASTY = [
    "",
    "../../etc/passwd",
    "a/b",
    "a\\b",
    "a\x00b",
    "\x00",
    "agent:\x00",
    "ａｇｅｎｔ",  # fullwidth
    "аgent",  # Cyrillic a
    "pr\u200breviewer",  # zero-width space
    "\u202etxt.exe",  # right-to-left override
    "github:pulls:read\ngithub:admin",
    "' OR 1=1 --",
    "<script>alert(1)</script>",
    "%00%2e%2e%2f",
    "${HOME}",
    "x" * 5000,
    "é" * 70000,
    "-1",
    "1e309",
    "NaN",
    "99999999999999999999999",
]
text = st.one_of(st.sampled_from(NASTY), st.text(max_size=80))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    text,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)
CONTROL_KEYS = [
    "name",
    "agent",
    "allow",
    "display_name",
    "max_ttl",
    "scopes",
    "target",
    "ttl",
    "interactive",
    "jti",
    "kill",
    "scope",
    "action",
    "resource",
    "principal",
    "secret",
    "pid",
]
bodies = st.dictionaries(st.sampled_from(CONTROL_KEYS) | text, json_values, max_size=6)
CONTROL_POSTS = [
    "/v1/agents",
    "/v1/credentials",
    "/v1/revoke",
    "/v1/policy/explain",
    "/v1/lease/child",
    "/v1/lease/release",
    "/v1/audit/checkpoint",
    "/v1/config/reload",
    "/v1/policy/reload",
]
segments = st.one_of(st.sampled_from(NASTY[:12]), st.text(min_size=1, max_size=40))
# URLs have a length limit of their own (the client's): big values go in bodies.
url_text = st.one_of(st.sampled_from([n for n in NASTY if len(n) < 6000]), st.text(max_size=80))


def _alive(k: Kontext) -> None:
    with k.control() as api:
        assert api.get("/v1/status").status_code == 200
    log = k.log_file.read_text(errors="replace")
    assert "internal error" not in log and "Traceback" not in log, log[-3000:]


def _sane(answer: httpx.Response) -> None:
    assert answer.status_code < 500 or answer.status_code in (502, 503), answer.text
    assert "Traceback" not in answer.text and 'File "' not in answer.text
    if answer.status_code >= 400 and answer.headers.get("content-type", "").startswith(
        "application/json"
    ):
        error = answer.json()
        assert "error" in error or "message" in error


@pytest.fixture(scope="module")
def fz() -> Iterator[Kontext]:
    """A daemon of this module's own: the throttle and junk agents stay here."""
    k = Kontext(short_home())
    k.start()
    yield k
    k.stop()
    shutil.rmtree(k.home, ignore_errors=True)
    report = os.environ.get("KONTEXT_FUZZ_REPORT")
    if report:
        Path(report).write_text(json.dumps(dict(CASES), indent=2) + "\n")


def test_control_api_json_bodies(fz: Kontext) -> None:
    with fz.control() as api:

        @FUZZ
        @given(path=st.sampled_from(CONTROL_POSTS), body=bodies)
        def case(path: str, body: dict[str, Any]) -> None:
            CASES["control-api JSON bodies"] += 1
            _sane(api.post(path, content=json.dumps(body, allow_nan=True)))

        case()
    _alive(fz)


def test_control_api_paths_queries_and_raw_bytes(fz: Kontext) -> None:
    with fz.control() as api:

        @FUZZ
        @given(
            kind=st.sampled_from(["agent", "audit", "credentials", "integration", "raw"]),
            segment=segments,
            query=st.dictionaries(
                st.sampled_from(["agent", "last", "after", "limit", "event", "since"]) | url_text,
                url_text,
                max_size=4,
            ),
            raw=st.binary(max_size=300),
        )
        def case(kind: str, segment: str, query: dict[str, str], raw: bytes) -> None:
            CASES["control-api paths, queries, raw bodies"] += 1
            quoted = urllib.parse.quote(segment, safe="")
            if kind == "agent":
                answer = api.get(f"/v1/agents/{quoted}")
            elif kind == "audit":
                answer = api.get(
                    "/v1/audit", params={k: v for k, v in query.items() if k != "wait"}
                )
            elif kind == "credentials":
                answer = api.get("/v1/credentials", params=query)
            elif kind == "integration":
                answer = api.post(f"/v1/integrations/{quoted}/disconnect", json={})
            else:
                answer = api.post("/v1/agents", content=raw)
            _sane(answer)

        case()
    _alive(fz)


# Nested structures: arrays, objects and both, around and past the depth limit
# (kontext.common.parsing.MAX_DEPTH = 32) and past Python's recursion limit (1,000).
DEPTHS = st.sampled_from([31, 32, 33, 64, 999, 1000, 1001, 5000, 20000]) | st.integers(1, 25000)
NEST_KINDS = st.sampled_from(["array", "object", "mixed"])


def nested_json(kind: str, depth: int) -> str:
    if kind == "array":
        return "[" * depth + "]" * depth
    if kind == "object":
        return '{"a":' * depth + "1" + "}" * depth
    half = max(1, depth // 2)
    return '[{"a":' * half + "1" + "}]" * half


def test_control_api_deeply_nested_json(fz: Kontext) -> None:
    # /v1/credentials is answered by the lease loop itself (leases.parse), the rest
    # by the handler threads; policy explain was a 500 with a traceback.
    posts = ["/v1/credentials", "/v1/policy/explain", "/v1/agents", "/v1/revoke"]
    with fz.control() as api:

        @FUZZ
        @given(
            path=st.sampled_from(posts),
            kind=NEST_KINDS,
            depth=DEPTHS,
            where=st.sampled_from(["body", "scopes", "agent"]),
        )
        def case(path: str, kind: str, depth: int, where: str) -> None:
            CASES["control-api nested JSON"] += 1
            inner = nested_json(kind, depth)
            body = inner if where == "body" else f'{{"name": "x", "{where}": {inner}}}'
            answer = api.post(path, content=body)
            _sane(answer)
            levels = (2 * max(1, depth // 2) if kind == "mixed" else depth) + (where != "body")
            if levels > 32 and len(body) <= 64 * 1024:
                assert answer.status_code == 400, (path, depth, answer.text)
                assert "nested deeper than 32 levels" in answer.text

        case()
    _alive(fz)


def test_loopback_deeply_nested_json(fz: Kontext) -> None:
    # /register (RFC 7591) reads JSON from any program here — another OS user's, a
    # loopback page's — with no token: 5,000 nested arrays were a 500 and a traceback
    # in the daemon log (issue 17 item 19).
    with fz.http() as http:

        @FUZZ
        @given(
            kind=NEST_KINDS,
            depth=DEPTHS,
            where=st.sampled_from(["body", "redirect_uris", "client_name"]),
        )
        def case(kind: str, depth: int, where: str) -> None:
            CASES["loopback nested JSON"] += 1
            inner = nested_json(kind, depth)
            body = (
                inner
                if where == "body"
                else f'{{"redirect_uris": ["http://127.0.0.1:9/cb"], "{where}": {inner}}}'
            )
            answer = http.post(
                "/register", content=body, headers={"Content-Type": "application/json"}
            )
            _sane(answer)
            levels = (2 * max(1, depth // 2) if kind == "mixed" else depth) + (where != "body")
            if levels > 32 and len(body) <= 64 * 1024 and answer.status_code != 429:
                assert answer.status_code == 400, (depth, answer.text)  # not a 500
                assert "nested deeper than 32 levels" in answer.text

        case()
    _alive(fz)


def test_a_providers_deep_userinfo_is_one_line() -> None:
    """An external OIDC provider's UserInfo answer (a real local HTTP server) of 5,000
    nested arrays: the login fails with one line, never "maximum recursion depth"."""
    import http.server
    import threading

    from kontextd.oauth import relying

    body = nested_json("array", 5000).encode()

    class Provider(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Provider)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        meta = {"userinfo_endpoint": f"http://127.0.0.1:{server.server_address[1]}/userinfo"}
        with pytest.raises(relying.ProviderError, match="UserInfo endpoint failed: TooDeep"):
            relying.userinfo(meta, "access-token", "subject")
    finally:
        server.shutdown()
        server.server_close()


def nested_toml(kind: str, depth: int) -> str:
    if kind == "array":
        return "a = " + "[" * depth + "]" * depth + "\n"
    if kind == "object":
        return "a = " + "{b = " * depth + "1" + "}" * depth + "\n"
    if kind == "dotted":
        return ".".join(["k"] * depth) + " = 1\n"
    return "[" + ".".join(["t"] * depth) + "]\nx = 1\n"


def test_deeply_nested_config_files() -> None:
    from kontext.common import config

    directory = Path(tempfile.mkdtemp(prefix="kx-fuzz-"))
    path = directory / "config.toml"
    try:

        @FUZZ
        @given(
            kind=st.sampled_from(["array", "object", "dotted", "header"]),
            depth=DEPTHS,
            section=st.sampled_from(["", "[integrations.jira]\n", "[secrets]\n"]),
        )
        def case(kind: str, depth: int, section: str) -> None:
            CASES["config files, nested"] += 1
            path.write_text(section + nested_toml(kind, depth))
            try:
                config.load(str(path))
            except config.ConfigError as exc:
                assert str(exc).startswith(f"{path}: ") and "Traceback" not in str(exc)
                if depth > 32:
                    assert "nested deeper than 32 levels" in str(exc), str(exc)[:300]
            else:
                assert depth <= 32

        case()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_a_deep_config_is_named_by_the_daemon_and_doctor(fresh_kx: Kontext) -> None:
    config = fresh_kx.home / "config" / "config.toml"
    config.parent.mkdir(mode=0o700)
    config.write_text(nested_toml("array", 5000))
    start = fresh_kx.run("daemon", "start")
    assert start.returncode == 6, start.stderr  # config invalid
    assert start.stderr.splitlines() == [
        f"kontext: kontextd could not start: {config}: TOML nested deeper than 32 levels "
        "of arrays and objects; fix or remove the file"
    ]
    doctor = fresh_kx.run("doctor")
    assert doctor.returncode == 12 and "Traceback" not in doctor.stdout + doctor.stderr
    assert f"fail  config    {config}: TOML nested deeper than 32 levels" in doctor.stdout
    export = fresh_kx.home / "deep.jsonl"
    export.write_text(nested_json("array", 5000) + "\n")
    verify = fresh_kx.run("audit", "verify", "--file", str(export))
    assert verify.returncode == 2 and verify.stderr.count("\n") == 1, verify.stderr
    assert "deep.jsonl:1: not a line 'audit export' writes" in verify.stderr


OAUTH_KEYS = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "request_uri",
    "grant_type",
    "code",
    "code_verifier",
    "refresh_token",
    "subject_token",
    "subject_token_type",
    "token",
    "token_type_hint",
    "csrf",
    "decision",
    "grant_duration",
    "resource",
    "audience",
]
forms = st.dictionaries(st.sampled_from(OAUTH_KEYS) | text, text, max_size=8)


def test_oauth_form_parameters(fz: Kontext) -> None:
    secret = (fz.runtime / "oauth-client-secret").read_text().strip()
    with fz.http() as http:

        @FUZZ
        @given(
            endpoint=st.sampled_from(["/par", "/token", "/revoke", "/introspect", "/authorize"]),
            method=st.sampled_from(["GET", "POST"]),
            form=forms,
            client=st.sampled_from([None, "kontext", "agent:x", "agent:../..", "\x00"]),
        )
        def case(endpoint: str, method: str, form: dict[str, str], client: str | None) -> None:
            CASES["OAuth form parameters"] += 1
            auth = (urllib.parse.quote(client, safe=""), secret) if client else None
            if method == "GET":
                answer = http.get(endpoint, params={k[:200]: v[:500] for k, v in form.items()})
            else:
                answer = http.post(endpoint, data=form, auth=auth)
            _sane(answer)

        case()
    _alive(fz)


config_tables = st.fixed_dictionaries(
    {},
    optional={
        "secrets": st.dictionaries(st.sampled_from(["fallback"]) | text, json_values, max_size=2),
        "integrations": st.dictionaries(
            st.sampled_from(["github", "slack", "acme", "../x", ""]) | text,
            st.dictionaries(
                st.sampled_from(
                    [
                        "base_url",
                        "env",
                        "scopes",
                        "routes",
                        "oauth",
                        "credential",
                        "delivery",
                        "display_name",
                        "auth_scheme",
                    ]
                )
                | text,
                json_values,
                max_size=5,
            ),
            max_size=3,
        ),
    },
)


def _toml(value: Any) -> str | None:
    try:
        return tomli_w.dumps(value)
    except (TypeError, ValueError):
        return None


def test_config_files() -> None:
    from kontext.common import config

    directory = Path(tempfile.mkdtemp(prefix="kx-fuzz-"))
    path = directory / "config.toml"
    try:

        @FUZZ
        @given(table=config_tables, raw=st.one_of(st.none(), st.text(max_size=200)))
        def case(table: dict[str, Any], raw: str | None) -> None:
            CASES["config files"] += 1
            content = raw if raw is not None else _toml(table)
            if content is None:
                return
            path.write_text(content, errors="surrogatepass")
            try:
                config.load(str(path))
            except config.ConfigError as exc:
                assert str(path) in str(exc) and "Traceback" not in str(exc)

        case()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


CEDAR_WORDS = [
    "permit",
    "forbid",
    "(",
    ")",
    "{",
    "}",
    ";",
    ",",
    "principal",
    "action",
    "resource",
    "context",
    "==",
    "in",
    "when",
    "unless",
    "&&",
    "||",
    "!",
    ".",
    'Agent::"pr-reviewer"',
    'Action::"issue"',
    'Integration::"github"',
    "context.scopes.contains",
    '"github:pulls:write"',
    "?principal",
    "@id(",
    '"',
    "//",
    "/*",
    "like",
    '"*"',
    "has",
    "ttl",
    "<",
    "3600",
    "if",
    "then",
    "else",
]


def test_policy_files() -> None:
    import cedarpy

    from kontext.common.integrations import BUILTINS
    from kontextd.policy import loader, schema

    parsed = cedarpy.Schema.from_str(schema.schema_text(BUILTINS))
    directory = Path(tempfile.mkdtemp(prefix="kx-fuzz-"))
    path = directory / "fuzz.cedar"
    try:

        @FUZZ
        @given(words=st.lists(st.sampled_from(CEDAR_WORDS) | text, max_size=30))
        def case(words: list[str]) -> None:
            CASES["policy files"] += 1
            path.write_text(" ".join(words), errors="surrogatepass")
            bundle = loader.load([str(directory)], parsed)
            assert bundle.errors or bundle.policy_set is not None or not bundle.policies
            for error in bundle.errors:
                assert str(path) in error

        case()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


CLI_COMMANDS = [
    ["agent", "create"],
    ["agent", "show"],
    ["agent", "list"],
    ["agent", "delete"],
    ["agent", "disable"],
    ["agent", "enable"],
    ["audit", "tail"],
    ["policy", "check"],
    ["policy", "explain"],
    ["revoke"],
    ["revoke", "credential"],
    ["consent", "list"],
    ["consent", "revoke"],
    ["integration", "list"],
]
CLI_OPTIONS = [
    "--allow",
    "--json",
    "--max-ttl",
    "--display-name",
    "--agent",
    "-n",
    "--scope",
    "--target",
    "--ttl",
    "--yes",
    "--kill",
    "--",
    "-h",
    "--since",
    "--event",
]


def test_cli_arguments(fz: Kontext, capsys: pytest.CaptureFixture[str]) -> None:
    from kontext_cli import main

    saved = dict(os.environ)
    os.environ.update({k: v for k, v in fz.env.items() if k.startswith(("KONTEXT_", "NO_COLOR"))})
    try:

        @FUZZ
        @given(
            command=st.sampled_from(CLI_COMMANDS),
            rest=st.lists(st.sampled_from(CLI_OPTIONS) | text, max_size=6),
        )
        def case(command: list[str], rest: list[str]) -> None:
            CASES["CLI arguments"] += 1
            argv = [*command, *(a.replace("\x00", "\\0") for a in rest)]
            code = main.main(argv)
            out, err = capsys.readouterr()
            assert isinstance(code, int) and code != 1, (argv, code, err)
            assert "Traceback" not in err + out, (argv, err)
            if code != 0:
                assert err.strip(), argv

        case()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    _alive(fz)

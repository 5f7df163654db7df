"""CI federation: a CI job proves who it is with its platform's OIDC token.

``kontext login --federate github-actions|gitlab|oidc`` hands the daemon the
token the CI platform minted for this job. The daemon verifies it
(``verify``: a believed issuer, signature from its JWKS by OIDC discovery, pinned
algorithms, ``iss``/``aud``/``exp``/``nbf``, single use), reads the workload from
its claims (``platforms``: repository, ref, workflow, run), finds the trust rules
that name that workload (``trust``, read from the org's pinned ``ci.toml`` and
the repository's ``.kontext/ci.toml`` at the very commit the token names,
``gitproof``/``sources``), and starts a session whose user is the workload
(``session``). The session's consent layer is the trust policy (``layer``):
nothing is granted that a rule does not name.
"""

"""The upstream gateway: connected integrations and the loopback proxy agents call.

- ``state``: the gateway's in-memory state (access-token cache, pending OAuth, HTTP client)
- ``connections``: upstream secrets in the SecretStore; refresh of provider tokens
- ``provider_oauth``: ``integration connect`` — authorization code + PKCE with the provider
- ``admin``: the control-API side (list, connect, disconnect)
- ``delivery``: what an exec'd child gets (broker: gateway URL; token: the provider's token)
- ``authorize``: a gateway request → token, route, scope and target checks
- ``proxy``: forwarding, streaming both ways, and the ``api.call`` audit
"""

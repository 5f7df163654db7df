"""The embedded OAuth 2.0 / OpenID Connect authorization server and the login session."""

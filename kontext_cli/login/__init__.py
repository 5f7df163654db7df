"""The CLI's side of browser logins and consent: PKCE, a one-shot loopback redirect
server, and the flows that tie them to an issuer (see ``flow``)."""

"""Agent consent: the user's grants, and the user-consent layer of the request path."""

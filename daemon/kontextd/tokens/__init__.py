"""Signing keys, access-token minting (RFC 9068) and verification."""

"""The daemon's two HTTP faces: the control API (Unix socket) and loopback HTTP."""

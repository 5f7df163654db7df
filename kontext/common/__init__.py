"""Code shared by the CLI and the daemon: paths, names, config, the wire format.

Everything here must stay cheap to import: ``kontext exec`` loads it on every run.
"""

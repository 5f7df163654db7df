"""The audit log: append-only events, each chained to the previous by SHA-256."""

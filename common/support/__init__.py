"""No level: pieces every level uses (backoff with jitter, logs, secret masking,
per-process singletons, the Retry-After parser)."""

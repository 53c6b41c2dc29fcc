"""Level 1: PostgreSQL, Redis and the broker start disconnected and reconnect
with backoff and jitter; one bounded probe per dependency."""

"""Level 2: each process reports its own readiness (heartbeats), and the fleet
its counters (metrics kept in Redis)."""

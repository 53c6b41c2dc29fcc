"""The Redis client of every process, and every Redis key Jenga writes."""

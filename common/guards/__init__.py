"""Level 4: every call to a service we do not control passes a circuit
breaker (``breaker``) and an adaptive concurrency limit (``limit``), both
shared by the fleet through Redis."""

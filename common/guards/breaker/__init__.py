"""Level 4: the fleet-wide circuit breaker (pure rule in ``policy.py``, its
atomic twin in ``policy.lua``)."""

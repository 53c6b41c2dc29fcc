"""Level 4: the fleet-wide circuit breaker: pure rule in ``policy.py``, its
atomic twin in ``policy.lua`` (run by ``store.py``), one service's breaker in
``breaker.py``, the process's breakers in ``registry.py``, alarms in
``alarm.py``, the ``circuitbreaker`` drop-in in ``compat.py``."""

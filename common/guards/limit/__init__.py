"""Level 4: the adaptive (AIMD) concurrency limit shared by the fleet (pure
rule in ``aimd.py``, its atomic twin in ``aimd.lua``, run by ``store.py``;
``SharedLimit`` in ``shared.py``)."""

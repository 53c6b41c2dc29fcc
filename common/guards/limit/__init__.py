"""Level 4: the adaptive (AIMD) concurrency limit shared by the fleet (pure
rule in ``aimd.py``)."""

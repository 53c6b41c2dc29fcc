"""For operators: the ``jenga`` command line and the embedded local stack of
``make run``."""

"""Level 4: every call to a service we do not control passes a circuit
breaker (``breaker``) and an adaptive concurrency limit (``limit``), both
shared by the fleet through Redis. ``names``: the one service-name rule;
``outcome``: what counts as a failed call; ``overview``: what operators read;
``force``: an operator opening, closing or resetting a breaker."""

"""Level 3: alarms open on failure and clear after N passing checks, their
state in Redis; notifiers tell people once per transition."""

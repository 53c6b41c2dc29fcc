"""What both the API and the worker stand on: config, connections, health,
alarms, breakers and limits. Nothing here imports Celery's app, the web
framework, ``api`` or ``worker``."""

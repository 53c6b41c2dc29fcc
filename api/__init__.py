"""Jenga's HTTP API (FastAPI): health, alarms, breakers, metrics, status and the /v1 webhook API."""

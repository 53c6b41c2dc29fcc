"""Level 5 rules that need no Celery: the webhook tables, destinations (SSRF
policy), Standard Webhooks signing and the retry schedule."""

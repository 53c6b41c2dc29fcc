"""Level 5: operational webhooks, from their outbox to the operational endpoints (the
events and who gets them: :mod:`common.delivery.operational`).

``jenga.operational.route`` (beat, every ``DELIVERY_DISPATCH_INTERVAL_SECONDS``, on the
``{ns}.operational`` queue) takes the oldest events of ``webhook_operational_events``
(``FOR UPDATE SKIP LOCKED``: two routers split them), makes a message of each for its
application and one for ``app_operations`` where an enabled operational endpoint of that
application is subscribed to its type, fans them out, deletes the events, all in one
transaction, and then enqueues the deliveries on ``{ns}.operational``. From there they
are deliveries like any other (``worker/delivery``): the dispatcher sends their retries
back to that queue.
"""

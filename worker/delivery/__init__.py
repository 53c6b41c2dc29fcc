"""Level 5: webhook delivery tasks.

Two tasks, and PostgreSQL holds every decision between them (the outbox and
schedule columns are described in :mod:`common.delivery.models`):

* ``jenga.delivery.dispatch`` (beat, every ``DELIVERY_DISPATCH_INTERVAL_SECONDS``,
  on the default queue so a delivery backlog never delays it): claims the
  pending deliveries (one message to one endpoint) that are due with
  ``SELECT ... FOR UPDATE SKIP LOCKED``, stamps ``dispatched_at`` and enqueues one
  ``deliver`` task each. Deliveries whose task was enqueued long ago but never
  started (broker down when the API committed, a worker SIGKILLed with the task)
  are due again after ``DELIVERY_REDISPATCH_SECONDS``: a message the API accepted
  is never lost.
* ``jenga.delivery.deliver(delivery_id)`` (``{ns}.deliveries`` queue): takes a
  lease on the delivery (a duplicate task finds it and does nothing), signs and
  POSTs it through the host's guarded-call slot (breaker + AIMD limit), then
  records the attempt and the next state (:func:`common.delivery.retry_schedule.decide`)
  in one transaction guarded by the lease token.

A delivery is repeated only when a worker dies (or PostgreSQL fails) between
the POST and the recording of its result; it carries the same ``webhook-id``,
so receivers can drop it.
"""

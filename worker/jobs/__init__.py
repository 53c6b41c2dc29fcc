"""Level 5: background jobs that re-queue failed deliveries (recover an endpoint,
retry by filter).

The API stores a job (``webhook_jobs``, :class:`common.delivery.models.Job`) and
answers 202; nothing is published. Beat sends ``jenga.jobs.advance`` every
``DELIVERY_DISPATCH_INTERVAL_SECONDS`` on the deliveries queue
(:mod:`worker.jobs.tasks`); each tick takes a lease on each unfinished job in turn
and re-queues its next deliveries, in batches of at most :data:`~worker.jobs.queries.BATCH`,
each batch one short transaction that also moves the job's cursor and ``done_count``
(:mod:`worker.jobs.queries`). Re-queued deliveries are due ``1 / rate`` apart
(:mod:`common.delivery.recover_pace`): the dispatcher enqueues them among live traffic,
no task is published per delivery.

A worker that dies mid-tick leaves a lease that lapses (``LEASE_SECONDS``); the next
tick resumes the job from its cursor, and a delivery behind the cursor is never
taken again.
"""

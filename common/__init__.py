"""What both the API and the worker stand on, one package per level of the
stacked design. A package may use the levels below it, never above; nothing
here imports Celery's app, the web framework, ``api`` or ``worker``.

* ``support``      no level: backoff, logs, masking, per-process singletons
* ``config``       level 0: typed settings, loaded and checked before anything connects
* ``redis``        the Redis client and every Redis key (used from level 1 up)
* ``broker``       the publish-only Celery client and the queue and task names
* ``connections``  level 1: probes, dependency monitors, the database engine
* ``health``       level 2: heartbeats and fleet-wide metrics
* ``alarms``       level 3: alarm policy and store, notifiers
* ``guards``       level 4: circuit breakers and adaptive concurrency limits
* ``delivery``     level 5 rules that need no Celery: models, destinations, signing, schedule
* ``access``       who may use the API: key format, scopes, rate limit, audit log
* ``ops``          the ``jenga`` command line and the embedded local stack
"""

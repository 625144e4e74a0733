"""City rollout load tests (``coopride loadtest``, ``docs/loadtesting.md``).

``locustfile`` is the only module here that imports Locust, and nothing in the app or the
tests imports it (Locust patches the process with gevent): ``coopride loadtest`` runs it
in a subprocess. The other modules (plan, trace, KPIs, the orchestrator) are plain Python.
"""

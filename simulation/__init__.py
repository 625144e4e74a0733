"""Simulation above the dispatcher: replays and the demo city.

- ``demand``: demand files read into riders' requests, drop-offs drawn, drivers placed.
- ``simulator``: the replay on a simulated clock, through the dispatcher's own batch
  planner (``dispatch.batch.planner``) and constants; ``kpis``: what it measured.
- ``defaults``: the replay's defaults, cheap to import (``coopride --help`` shows them).
- ``cli``: ``coopride simulate``.
- ``city``: the demo city, phones that drive a real server through its HTTP API and
  sockets (``coopride demo``, and the load test's service area).

Nothing here is imported by the service itself: ``server`` uses it for its commands.
"""

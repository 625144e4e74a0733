"""The batch planner: a dispatch batch's queued requests, each with its candidate
drivers, turned into assignments. Pure (no I/O, no clock), so the live dispatcher
(``dispatch.dispatcher``) and the simulator (``simulation.simulator``) run the same code
with the same constants.

- ``types``: the batch's values, at the bottom: ``Candidate``, ``Request``,
  ``DriverStats``, ``Assignment``.
- ``matching``: the two policies, ``nearest_first`` (greedy) and ``optimal`` (one
  assignment for the batch).
- ``solver``: the min-cost flow behind ``optimal``; the only module that imports OR-Tools.
- ``fairness``: the edge costs that favour members who waited longest or earned least.
- ``planner``: ``plan`` (the one entry point) and ``explain`` (what each candidate is
  told in its dispatch log).

See ``docs/dispatch-algorithm.md``.
"""

"""The web layer: what both audiences' APIs share, between the domain (``dispatch``,
``fares``) and the routes (``rider_api``, ``driver_api``, ``server``).

- ``runtime``: ``ApiRuntime``, the api process's runtime (the hub, the rate limiter).
- ``deps``: FastAPI dependencies: the runtime, a unit of work per request, who is
  calling.
- ``sockets``: the socket loop: authentication, the reader and frame routing, error
  frames, close codes.
- ``event_stream``: a person's events to their socket, with resume after a reconnect.
- ``schemas``: the wire shapes both audiences answer with (``api.md``).

FastAPI and Starlette are imported here and in the route packages only; the domain
never sees them (an import contract in pyproject.toml says so).
"""

"""``python -m loadtests``, which ``coopride loadtest`` hands over to: a bounded city
rollout under Locust (``docs/loadtesting.md``).

A program of its own, so that the service (``server``) never imports the load test: the
``coopride`` command only replaces itself with this one.
"""

from __future__ import annotations

import argparse
import sys

from loadtests.run import add_arguments, main


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="coopride loadtest",
        description="a city rollout under Locust, bounded in time (docs/loadtesting.md)",
    )
    add_arguments(parser)
    return main(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(cli())

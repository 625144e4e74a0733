"""Registers the suite's shared fixtures; they live in ``tests/fixtures/`` (one module a
concern, listed in its ``__init__``), where test modules import helpers from too. Test
modules never import each other or a conftest (an import-linter contract checks it)."""

import pytest

# Helpers in tests/fixtures assert too (a phone's sign-up answered 201, …): rewritten,
# their failures show the values, as in a test module.
pytest.register_assert_rewrite("tests.fixtures")

pytest_plugins = ["tests.fixtures.run", "tests.fixtures.servers", "tests.fixtures.world"]

"""core.settings.Settings: placeholder secrets refused outside development, COOP_ env."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from pydantic import ValidationError

from core.settings import DEV_JWT_SECRET, DEV_OPERATOR_TOKEN, PLACEHOLDER_SECRETS, Settings

STRONG_JWT = "k" * 24 + secrets.token_hex(16)  # 56 characters
STRONG_OPERATOR = secrets.token_urlsafe(24)

PLACEHOLDERS = sorted(PLACEHOLDER_SECRETS | {DEV_JWT_SECRET, DEV_OPERATOR_TOKEN, "change-me", ""})
# The same placeholders as a careless operator might type them.
VARIANTS = ["CHANGE-ME", "  change-me  ", "Secret", "ChangeThis", "   ", DEV_JWT_SECRET.upper()]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No COOP_ variable of the outer environment may leak into these tests."""
    import os

    for name in list(os.environ):
        if name.startswith("COOP_"):
            monkeypatch.delenv(name)


def make(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


@pytest.mark.parametrize("environment", ["test", "production"])
@pytest.mark.parametrize("placeholder", PLACEHOLDERS + VARIANTS)
def test_placeholder_jwt_secret_is_refused(environment: str, placeholder: str) -> None:
    with pytest.raises(ValidationError, match="COOP_JWT_SECRET"):
        make(environment=environment, jwt_secret=placeholder, operator_token=STRONG_OPERATOR)


@pytest.mark.parametrize("environment", ["test", "production"])
@pytest.mark.parametrize("placeholder", PLACEHOLDERS + VARIANTS)
def test_placeholder_operator_token_is_refused(environment: str, placeholder: str) -> None:
    with pytest.raises(ValidationError, match="COOP_OPERATOR_TOKEN"):
        make(environment=environment, jwt_secret=STRONG_JWT, operator_token=placeholder)


@pytest.mark.parametrize("environment", ["test", "production"])
def test_the_defaults_are_refused_outside_development(environment: str) -> None:
    with pytest.raises(ValidationError, match="placeholder"):
        make(environment=environment)


@pytest.mark.parametrize("placeholder", PLACEHOLDERS)
def test_placeholders_are_accepted_in_development(placeholder: str) -> None:
    s = make(environment="development", jwt_secret=placeholder, operator_token=placeholder)
    assert s.jwt_secret == placeholder
    assert s.operator_token == placeholder


def test_development_defaults_need_nothing_set() -> None:
    s = make()
    assert s.environment == "development"
    assert s.jwt_secret == DEV_JWT_SECRET
    assert s.operator_token == DEV_OPERATOR_TOKEN


@pytest.mark.parametrize("environment", ["test", "production"])
def test_real_secrets_are_accepted_outside_development(environment: str) -> None:
    s = make(environment=environment, jwt_secret=STRONG_JWT, operator_token=STRONG_OPERATOR)
    assert s.environment == environment
    assert s.jwt_secret == STRONG_JWT


@pytest.mark.parametrize("environment", ["test", "production"])
def test_short_jwt_secret_is_refused_outside_development(environment: str) -> None:
    short = secrets.token_hex(16)[:31]
    with pytest.raises(ValidationError, match="at least 32"):
        make(environment=environment, jwt_secret=short, operator_token=STRONG_OPERATOR)
    exactly_32 = secrets.token_hex(16)
    assert len(exactly_32) == 32
    assert (
        make(
            environment=environment, jwt_secret=exactly_32, operator_token=STRONG_OPERATOR
        ).jwt_secret
        == exactly_32
    )


def test_short_jwt_secret_is_accepted_in_development() -> None:
    assert make(environment="development", jwt_secret="short").jwt_secret == "short"


def test_coop_prefixed_env_vars_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COOP_ENVIRONMENT", "production")
    monkeypatch.setenv("COOP_JWT_SECRET", STRONG_JWT)
    monkeypatch.setenv("COOP_OPERATOR_TOKEN", STRONG_OPERATOR)
    monkeypatch.setenv("COOP_REDIS_PREFIX", "coop-east:")
    monkeypatch.setenv("COOP_H3_RESOLUTION", "9")
    monkeypatch.setenv("COOP_MAX_PICKUP_ETA_S", "600")
    monkeypatch.setenv("COOP_DISPATCH_BATCH_S", "0.5")
    s = Settings(_env_file=None)
    assert s.environment == "production"
    assert s.jwt_secret == STRONG_JWT
    assert s.operator_token == STRONG_OPERATOR
    assert s.redis_prefix == "coop-east:"
    assert s.h3_resolution == 9
    assert s.max_pickup_eta_s == 600
    assert s.dispatch_batch_s == 0.5


def test_env_vars_without_the_prefix_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("H3_RESOLUTION", "11")
    monkeypatch.setenv("ENVIRONMENT", "production")
    s = Settings(_env_file=None)
    assert s.h3_resolution == 8
    assert s.environment == "development"


def test_placeholder_from_the_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COOP_ENVIRONMENT", "production")
    monkeypatch.setenv("COOP_JWT_SECRET", STRONG_JWT)
    monkeypatch.setenv("COOP_OPERATOR_TOKEN", "change-me")
    with pytest.raises(ValidationError, match="COOP_OPERATOR_TOKEN"):
        Settings(_env_file=None)


def test_invalid_values_from_the_environment_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COOP_H3_RESOLUTION", "16")
    with pytest.raises(ValidationError):
        Settings(_env_file=None)
    monkeypatch.setenv("COOP_H3_RESOLUTION", "8")
    monkeypatch.setenv("COOP_ENVIRONMENT", "staging")
    with pytest.raises(ValidationError):
        Settings(_env_file=None)


def test_trusted_proxies_are_none_by_default_and_normalised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert make().trusted_proxies == ""
    monkeypatch.setenv("COOP_TRUSTED_PROXIES", " 127.0.0.1, 10.0.0.0/8 ,::1,127.0.0.1,")
    assert Settings(_env_file=None).trusted_proxies == "127.0.0.1,10.0.0.0/8,::1"


@pytest.mark.parametrize("bad", ["*", "localhost", "10.0.0.1/8", "127.0.0.1, 1.2.3"])
def test_trusted_proxies_must_be_addresses_or_networks(bad: str) -> None:
    """A typo must not quietly trust nobody, and trusting every peer is refused."""
    with pytest.raises(ValidationError, match="trusted_proxies"):
        make(trusted_proxies=bad)


def test_a_request_timeout_no_offer_fits_in_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COOP_OFFER_TIMEOUT_S", "15")
    monkeypatch.setenv("COOP_DISPATCH_BATCH_S", "2")
    monkeypatch.setenv("COOP_TRIP_REQUEST_TIMEOUT_S", "17")
    with pytest.raises(ValidationError, match="COOP_TRIP_REQUEST_TIMEOUT_S"):
        Settings(_env_file=None)
    monkeypatch.setenv("COOP_TRIP_REQUEST_TIMEOUT_S", "17.5")
    assert Settings(_env_file=None).trip_request_timeout_s == 17.5

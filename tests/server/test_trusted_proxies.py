"""``coopride serve`` behind a reverse proxy: which peers' ``X-Forwarded-For`` uvicorn
believes (``COOP_TRUSTED_PROXIES``, ``--forwarded-allow-ips``), and what it makes of the
header. The whole path through a real nginx is tests/e2e/test_reverse_proxy.py."""

from __future__ import annotations

from typing import Any

import pytest
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from core.settings import Settings
from server import cli


@pytest.fixture
def uvicorn_runs(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What ``serve`` hands uvicorn, without serving, logging setup or a frozen GC."""
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr("uvicorn.run", lambda app, **options: calls.append(options))
    monkeypatch.setattr("server.logs.configure", lambda *a, **k: None)
    monkeypatch.setattr(cli, "tune_gc", lambda: None)
    # The start-up checks have tests of their own (tests/server/test_config_errors.py).
    monkeypatch.setattr(cli, "check", lambda *a, **k: None)
    # Set for the workers by ``serve --workers N``; removed again after the test.
    monkeypatch.setenv(cli._WORKER_LOG_LEVEL, "INFO")
    return calls


def with_trusted(monkeypatch: pytest.MonkeyPatch, trusted: str) -> None:
    settings = Settings(_env_file=None, trusted_proxies=trusted)
    monkeypatch.setattr(cli, "get_settings", lambda: settings)
    monkeypatch.setattr(cli, "load_settings", lambda: settings)


def test_by_default_no_forwarded_header_is_read(
    uvicorn_runs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """uvicorn alone would believe 127.0.0.1; the service trusts nobody unless told."""
    with_trusted(monkeypatch, "")
    cli.main(["serve", "--no-dispatcher"])
    (options,) = uvicorn_runs
    assert options["proxy_headers"] is False


@pytest.mark.parametrize("workers", [1, 2])
def test_the_setting_names_the_trusted_proxies(
    uvicorn_runs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    with_trusted(monkeypatch, "127.0.0.1, 10.0.0.0/8")
    cli.main(["serve", "--no-dispatcher", "--workers", str(workers)])
    (options,) = uvicorn_runs
    assert options["proxy_headers"] is True
    assert options["forwarded_allow_ips"] == ["127.0.0.1", "10.0.0.0/8"]


def test_the_flag_replaces_the_setting(
    uvicorn_runs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    with_trusted(monkeypatch, "127.0.0.1")
    cli.main(["serve", "--forwarded-allow-ips", "192.0.2.10,2001:db8::/32"])
    cli.main(["serve", "--forwarded-allow-ips", ""])
    flagged, emptied = uvicorn_runs
    assert flagged["proxy_headers"] is True
    assert flagged["forwarded_allow_ips"] == ["192.0.2.10", "2001:db8::/32"]
    assert emptied["proxy_headers"] is False


@pytest.mark.parametrize("bad", ["*", "nginx.internal", "10.0.0.1/8", "127.0.0.1,300.1.1.1"])
def test_a_flag_that_is_not_addresses_is_refused(
    uvicorn_runs: list[dict[str, Any]], capsys: pytest.CaptureFixture[str], bad: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["serve", "--forwarded-allow-ips", bad])
    assert exited.value.code == 2
    assert "--forwarded-allow-ips" in capsys.readouterr().err
    assert not uvicorn_runs


async def client_seen(trusted: list[str], peer: str, forwarded: str | None) -> str:
    """The client address the app is given, under uvicorn's proxy middleware configured
    as ``serve`` configures it."""
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["client"][0])

    headers = [] if forwarded is None else [(b"x-forwarded-for", forwarded.encode())]
    scope = {"type": "http", "client": (peer, 5000), "headers": headers}
    middleware = ProxyHeadersMiddleware(app, trusted_hosts=trusted)
    await middleware(scope, None, None)  # type: ignore[arg-type]
    return seen[0]


async def test_only_a_trusted_peer_is_believed_and_only_for_the_last_hop() -> None:
    trusted = cli.proxy_options(("127.0.0.1",))["forwarded_allow_ips"]
    # nginx (trusted) passing on a rider.
    assert await client_seen(trusted, "127.0.0.1", "203.0.113.5") == "203.0.113.5"
    # A rider who sent a forged header through nginx: nginx appended the real address,
    # the right-most one that is not a trusted proxy is taken.
    assert await client_seen(trusted, "127.0.0.1", "198.51.100.7, 203.0.113.5") == "203.0.113.5"
    # A client straight at the api: its header is ignored.
    assert await client_seen(trusted, "203.0.113.9", "198.51.100.7") == "203.0.113.9"

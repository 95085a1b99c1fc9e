"""The SSRF guard. Blocked addresses are tested through resolution results and IP literals only:
nothing here ever connects anywhere but 127.0.0.1 / ::1. Tests that would connect to a blocked
address if the guard were broken carry a tripwire that fails them before any socket opens."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from notifications.policy import classify_exception
from notifications.ssrf import AddressPolicy, BlockedURL, GuardedResolver, check_url, make_session
from tests.fakes.provider_servers import FakeProviders, running_fake_providers

LOCAL = frozenset({"127.0.0.1", "::1"})


class FakeResolver(AbstractResolver):
    """Answers from a table: host -> successive answers (the last one repeats)."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.calls: list[str] = []
        self.last_answer: list[str] = []
        self.closed = False

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host not in self.answers:
            raise OSError(socket.EAI_NONAME, f"{host} not found")
        answers = self.answers[host]
        self.last_answer = answers[min(len(self.calls_for(host)), len(answers) - 1)]
        self.calls.append(host)
        return [_result(host, address, port) for address in self.last_answer]

    def calls_for(self, host: str) -> list[str]:
        return [call for call in self.calls if call == host]

    async def close(self) -> None:
        self.closed = True


def _result(host: str, address: str, port: int) -> ResolveResult:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    flags = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
    return ResolveResult(
        hostname=host, host=address, port=port, family=family, proto=0, flags=flags
    )


def connection_tripwire(allowed: int = 0) -> aiohttp.TraceConfig:
    """Fails the request when aiohttp starts connection number ``allowed + 1``."""
    made = 0

    async def on_connection_start(*_: object) -> None:
        nonlocal made
        made += 1
        if made > allowed:
            raise AssertionError("the guard let a connection to a blocked address start")

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_start.append(on_connection_start)
    return trace


def resolution_tripwire(resolver: FakeResolver) -> aiohttp.TraceConfig:
    """Fails the request when a non-local answer got past the guard, before aiohttp connects."""

    async def on_resolved(*_: object) -> None:
        unsafe = [address for address in resolver.last_answer if address not in LOCAL]
        if unsafe:
            raise AssertionError(f"the guard let {unsafe} through to the connector")

    trace = aiohttp.TraceConfig()
    trace.on_dns_resolvehost_end.append(on_resolved)
    return trace


@pytest.fixture
async def fake() -> AsyncIterator[FakeProviders]:
    async with running_fake_providers() as server:
        yield server


# --- addresses --------------------------------------------------------------------------------

LOOPBACK = "loopback"
LINK_LOCAL = "link-local"
PRIVATE = "private"


@pytest.mark.parametrize(
    ("address", "allow_loopback", "block_private", "reason"),
    [
        ("127.0.0.1", False, False, LOOPBACK),
        ("127.0.0.1", True, False, None),
        ("127.255.0.9", False, False, LOOPBACK),
        ("::1", False, False, LOOPBACK),
        ("::1", True, True, None),
        ("::ffff:127.0.0.1", False, False, LOOPBACK),
        ("::ffff:127.0.0.1", True, False, None),
        ("::127.0.0.1", False, False, LOOPBACK),  # IPv4-compatible form
        ("169.254.169.254", True, False, LINK_LOCAL),  # cloud metadata, even with loopback on
        ("169.254.0.1", False, False, LINK_LOCAL),
        ("::ffff:169.254.169.254", True, False, LINK_LOCAL),
        ("2002:a9fe:a9fe::", False, False, LINK_LOCAL),  # 6to4 around the metadata address
        ("64:ff9b::a9fe:a9fe", False, False, LINK_LOCAL),  # NAT64 around it
        ("fe80::1", False, False, LINK_LOCAL),
        ("fe80::1%eth0", False, False, LINK_LOCAL),
        ("fd00:ec2::254", False, False, LINK_LOCAL),  # AWS metadata over IPv6
        ("100.100.100.200", False, False, LINK_LOCAL),  # Alibaba metadata
        ("0.0.0.0", True, False, "unspecified"),
        ("0.1.2.3", True, False, "unspecified"),
        ("::", True, False, "unspecified"),
        ("224.0.0.1", False, False, "multicast"),
        ("ff02::1", False, False, "multicast"),
        ("240.0.0.1", False, False, "reserved"),
        ("255.255.255.255", False, False, "reserved"),
        ("10.0.0.5", False, False, None),
        ("10.0.0.5", False, True, PRIVATE),
        ("172.16.3.4", False, True, PRIVATE),
        ("192.168.1.10", False, False, None),
        ("192.168.1.10", True, True, PRIVATE),
        ("100.64.0.1", False, True, PRIVATE),  # carrier-grade NAT
        ("fd12:3456::1", False, False, None),
        ("fd12:3456::1", False, True, PRIVATE),
        ("fec0::1", False, True, PRIVATE),  # deprecated site-local
        ("::ffff:10.0.0.5", False, True, PRIVATE),
        ("8.8.8.8", False, True, None),
        ("::ffff:8.8.8.8", False, True, None),
        ("64:ff9b::808:808", False, True, None),
        ("2606:4700::1111", False, True, None),
    ],
)
def test_address_policy(
    address: str, allow_loopback: bool, block_private: bool, reason: str | None
) -> None:
    policy = AddressPolicy(allow_loopback=allow_loopback, block_private=block_private)
    verdict = policy.block_reason(ipaddress.ip_address(address))
    if reason is None:
        assert verdict is None
    else:
        assert verdict is not None and reason in verdict


# --- check_url --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com",
        "https://example.com:8443/hook?x=1",
        "HTTPS://Example.COM/",
        "http://homeassistant.local:8123",
        "http://10.0.0.5:8123/",
        "http://[2001:db8::1]/",
        "http://169.254.169.254/",  # without a policy only the form is checked
    ],
)
def test_check_url_accepts_http_urls(url: str) -> None:
    check_url(url)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/file", "scheme 'ftp'"),
        ("file:///etc/passwd", "scheme 'file'"),
        ("gopher://example.com:70/", "scheme 'gopher'"),
        ("javascript:alert(1)", "scheme 'javascript'"),
        ("//example.com/hook", "no scheme"),
        ("example.com/hook", "no scheme"),
        ("", "no scheme"),
        ("http://", "no host"),
        ("http:///path", "no host"),
        ("http://exa mple.com/", "whitespace"),
        ("http://2130706433/", "not a canonical IP"),
        ("http://127.1/", "not a canonical IP"),
        ("http://0x7f.0.0.1/", "not a canonical IP"),
        ("http://0177.0.0.1/", "not a canonical IP"),
        ("http://[::1/", "not a valid URL"),
    ],
)
def test_check_url_refuses(url: str, reason: str) -> None:
    with pytest.raises(BlockedURL, match=re.escape(reason)):
        check_url(url)


@pytest.mark.parametrize(
    ("url", "allow_loopback", "block_private", "blocked"),
    [
        ("http://127.0.0.1:8000/", False, False, True),
        ("http://127.0.0.1:8000/", True, False, False),
        ("http://[::1]:8000/", False, False, True),
        ("http://[::ffff:127.0.0.1]/", False, False, True),
        ("http://169.254.169.254/latest/meta-data/", True, False, True),
        ("http://[::ffff:a9fe:a9fe]/", True, False, True),
        ("http://[fe80::1%25eth0]/", True, False, True),
        ("http://0.0.0.0:8080/", True, False, True),
        ("http://192.168.1.10:8123/", False, False, False),
        ("http://192.168.1.10:8123/", False, True, True),
        ("http://8.8.8.8/", False, True, False),
        ("http://metadata.google.internal/", False, True, False),  # names: the resolver's job
    ],
)
def test_check_url_with_a_policy_checks_literal_ips(
    url: str, allow_loopback: bool, block_private: bool, blocked: bool
) -> None:
    policy = AddressPolicy(allow_loopback=allow_loopback, block_private=block_private)
    if blocked:
        with pytest.raises(BlockedURL):
            check_url(url, policy)
    else:
        check_url(url, policy)


def test_verdicts_are_remembered_per_host_and_policy() -> None:
    """The guard checks every request; a host's verdict is cached, never across policies."""
    loose, strict = AddressPolicy(allow_loopback=True), AddressPolicy(allow_loopback=False)
    for _ in range(2):  # the second round answers from the cache, the same way
        check_url("http://127.0.0.1:9/a", loose)
        with pytest.raises(BlockedURL, match=re.escape("127.0.0.1: loopback address")):
            check_url("http://127.0.0.1:9/b", strict)
        with pytest.raises(BlockedURL, match="not a canonical IP address"):
            check_url("http://2130706433/", loose)


def test_blocked_url_is_a_permanent_failure() -> None:
    failure = classify_exception(BlockedURL("10.0.0.1: private address"))
    assert (failure.kind, failure.code) == ("permanent", "blocked_url")
    assert failure.message == "10.0.0.1: private address"


# --- GuardedResolver ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("addresses", "allow_loopback", "block_private", "blocked"),
    [
        (["93.184.216.34"], False, False, False),
        (["93.184.216.34", "2606:2800:220:1::1"], False, True, False),
        (["93.184.216.34", "169.254.169.254"], False, False, True),  # one bad address is enough
        (["2606:2800:220:1::1", "::ffff:127.0.0.1"], False, False, True),
        (["93.184.216.34", "10.1.2.3"], False, False, False),
        (["93.184.216.34", "10.1.2.3"], False, True, True),
        (["127.0.0.1", "::1"], True, False, False),
        (["127.0.0.1", "::1"], False, False, True),
        (["93.184.216.34", "not-an-address"], False, False, True),
    ],
)
async def test_guarded_resolver_checks_every_address(
    addresses: list[str], allow_loopback: bool, block_private: bool, blocked: bool
) -> None:
    inner = FakeResolver({"hooks.example.com": [addresses]})
    guard = GuardedResolver(inner, allow_loopback=allow_loopback, block_private=block_private)
    if blocked:
        with pytest.raises(BlockedURL, match=re.escape("hooks.example.com resolves to")):
            await guard.resolve("hooks.example.com", 443)
    else:
        results = await guard.resolve("hooks.example.com", 443)
        assert [r["host"] for r in results] == addresses
        assert {r["port"] for r in results} == {443}


async def test_guarded_resolver_passes_failures_through_and_closes_its_inner() -> None:
    inner = FakeResolver({"empty.example.com": [[]]})
    guard = GuardedResolver(inner)
    with pytest.raises(OSError, match="not found"):
        await guard.resolve("unknown.example.com")
    with pytest.raises(OSError, match="no addresses"):
        await guard.resolve("empty.example.com")
    await guard.close()
    assert inner.closed


# --- the session: the address that was checked is the one connected to ------------------------


async def test_connects_to_the_checked_address_without_a_second_lookup(
    fake: FakeProviders,
) -> None:
    # "provider.test" exists only in the fake resolver: if aiohttp looked the name up again on
    # its own, the request could not reach the local server at all.
    port = fake.url.rsplit(":", 1)[1]
    resolver = FakeResolver({"provider.test": [["127.0.0.1"]]})
    async with make_session(
        allow_loopback=True, block_private=True, limit=4, inner_resolver=resolver
    ) as session:
        for _ in range(2):
            async with session.post(f"http://provider.test:{port}/webhook", json={}) as response:
                assert response.status == 200
    assert resolver.calls == ["provider.test"]  # the second request used the checked answer
    assert [r.headers["Host"] for r in fake.requests] == [f"provider.test:{port}"] * 2


async def test_a_rebound_name_is_refused_before_connecting(fake: FakeProviders) -> None:
    port = fake.url.rsplit(":", 1)[1]
    resolver = FakeResolver({"rebind.test": [["127.0.0.1"], ["169.254.169.254"]]})
    async with make_session(
        allow_loopback=True,
        block_private=False,
        limit=4,
        inner_resolver=resolver,
        trace_configs=[resolution_tripwire(resolver)],
    ) as session:
        # "Connection: close" so the next request has to connect (and so resolve) again.
        first = f"http://rebind.test:{port}/webhook"
        async with session.get(first, headers={"Connection": "close"}) as response:
            assert response.status == 200
        assert isinstance(session.connector, aiohttp.TCPConnector)
        session.connector.clear_dns_cache()  # as if its TTL had passed
        with pytest.raises(BlockedURL, match=re.escape("169.254.169.254")):
            await session.get(f"http://rebind.test:{port}/webhook")
    assert len(fake.requests) == 1
    assert len(resolver.calls) == 2


@pytest.mark.parametrize(
    ("answer", "allow_loopback", "block_private"),
    [
        (["93.184.216.34", "169.254.169.254"], True, False),
        (["93.184.216.34", "10.0.0.7"], True, True),
        (["127.0.0.1"], False, False),
    ],
)
async def test_session_refuses_names_resolving_to_blocked_addresses(
    fake: FakeProviders, answer: list[str], allow_loopback: bool, block_private: bool
) -> None:
    resolver = FakeResolver({"evil.test": [answer]})
    async with make_session(
        allow_loopback=allow_loopback,
        block_private=block_private,
        limit=4,
        inner_resolver=resolver,
        trace_configs=[resolution_tripwire(resolver)],
    ) as session:
        with pytest.raises(BlockedURL):
            await session.get("http://evil.test/")
    assert fake.requests == []


@pytest.mark.parametrize(
    ("host", "allow_loopback"),
    [
        ("169.254.169.254", True),
        ("[::ffff:169.254.169.254]", True),
        ("[fd00:ec2::254]", True),
        ("224.0.0.1", True),
        ("0.0.0.0", True),
        ("127.0.0.1", False),
        ("[::1]", False),
    ],
)
async def test_session_checks_ip_literals_the_resolver_never_sees(
    fake: FakeProviders, host: str, allow_loopback: bool
) -> None:
    port = fake.url.rsplit(":", 1)[1]
    async with make_session(
        allow_loopback=allow_loopback,
        block_private=False,
        limit=4,
        trace_configs=[connection_tripwire(allowed=0)],
    ) as session:
        with pytest.raises(BlockedURL):
            await session.get(f"http://{host}:{port}/webhook")
    assert fake.requests == []


async def test_the_tripwire_itself_stops_connections(fake: FakeProviders) -> None:
    async with make_session(
        allow_loopback=True, block_private=False, limit=4, trace_configs=[connection_tripwire()]
    ) as session:
        with pytest.raises(AssertionError, match="blocked address"):
            await session.get(f"{fake.url}/webhook")
    assert fake.requests == []


async def test_every_redirect_hop_is_checked() -> None:
    async def redirect(_: web.Request) -> web.Response:
        raise web.HTTPFound("http://169.254.169.254/latest/meta-data/")

    app = web.Application()
    app.router.add_get("/go", redirect)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        async with make_session(
            allow_loopback=True,
            block_private=False,
            limit=4,
            trace_configs=[connection_tripwire(allowed=1)],
        ) as session:
            with pytest.raises(BlockedURL, match=re.escape("169.254.169.254")):
                await session.get(f"http://127.0.0.1:{port}/go", allow_redirects=True)
    finally:
        await runner.cleanup()


async def test_explicit_proxies_are_refused(fake: FakeProviders) -> None:
    async with make_session(
        allow_loopback=True, block_private=False, limit=4, trace_configs=[connection_tripwire()]
    ) as session:
        with pytest.raises(BlockedURL, match="proxy"):
            await session.get(f"{fake.url}/webhook", proxy=fake.url)


@pytest.mark.parametrize(("allow_loopback", "reaches"), [(True, True), (False, False)])
async def test_real_resolution_of_localhost(
    fake: FakeProviders, allow_loopback: bool, reaches: bool
) -> None:
    port = fake.url.rsplit(":", 1)[1]
    async with make_session(allow_loopback=allow_loopback, block_private=True, limit=4) as session:
        if reaches:
            async with session.get(f"http://localhost:{port}/webhook") as response:
                assert response.status == 200
        else:
            with pytest.raises(BlockedURL, match="loopback"):
                await session.get(f"http://localhost:{port}/webhook")
    assert len(fake.requests) == (1 if reaches else 0)


async def test_session_settings() -> None:
    async with make_session(
        allow_loopback=False, block_private=False, limit=7, total_timeout=9.0, connect_timeout=2.0
    ) as session:
        assert (session.timeout.total, session.timeout.connect) == (9.0, 2.0)
        assert session.trust_env is False
        assert session.connector is not None and session.connector.limit == 7
    async with make_session(allow_loopback=False, block_private=False, limit=1) as session:
        assert (session.timeout.total, session.timeout.connect) == (15.0, 5.0)

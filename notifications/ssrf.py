"""SSRF guard for user-supplied URLs (webhooks, Home Assistant, Discord, ...).

Three layers, all needed:

- ``check_url``: http/https only, a real host, no non-canonical numeric hosts; with a policy,
  literal IP hosts are checked too. Used by config validation and, per request, by the
  session middleware (which also sees every redirect hop).
- ``GuardedResolver``: resolves through aiohttp's resolver and checks EVERY address before
  returning them. aiohttp then connects to exactly those addresses: no second DNS lookup, so
  no DNS-rebinding window (the old panel resolved once to check and again to connect).
- The middleware: aiohttp skips the resolver for IP-literal hosts, so they are checked there.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import socket
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.client_middlewares import ClientHandlerType
from aiohttp.resolver import DefaultResolver
from yarl import URL

from notifications.policy import PermanentError

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOWED_SCHEMES = frozenset({"http", "https"})
USER_AGENT = "alarm-worker-notifications/1"

# Metadata endpoints outside the link-local range (which is blocked anyway): AWS over IPv6
# (a ULA, so "private") and Alibaba Cloud (in carrier-grade NAT space, also "private").
_METADATA = frozenset(ipaddress.ip_address(a) for a in ("fd00:ec2::254", "100.100.100.200"))
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")  # Linux connects 0.0.0.0 to localhost
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


class BlockedURL(PermanentError):
    """A URL or resolved address the guard refuses; permanent: retrying cannot help."""

    code = "blocked_url"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    allow_loopback: bool = False
    block_private: bool = False

    def block_reason(self, address: IPAddress) -> str | None:
        """Why ``address`` may not be connected to, or None if it may."""
        if isinstance(address, ipaddress.IPv6Address):
            embedded = _embedded_ipv4(address)
            if embedded is not None:
                reason = self.block_reason(embedded)
                return f"{reason} (embedded in {address})" if reason else None
        if address.is_unspecified or address in _THIS_NETWORK:
            return "unspecified address"
        if address.is_loopback:
            return None if self.allow_loopback else "loopback address"
        if address in _METADATA or address.is_link_local:
            return "link-local or cloud metadata address"
        if address.is_multicast:
            return "multicast address"
        if address.is_reserved:
            return "reserved address"
        if self.block_private and (not address.is_global or _is_site_local(address)):
            return "private address"
        return None


def check_url(url: str | URL, policy: AddressPolicy | None = None) -> None:
    """Raise BlockedURL unless ``url`` is http(s) with a usable host.

    Without a policy only the form is checked (config validation: which addresses are allowed
    is a deployment setting). With one, a literal IP host is checked against it as well.
    """
    try:
        parsed = url if isinstance(url, URL) else URL(url)
        host = parsed.host
    except (TypeError, ValueError) as exc:
        raise BlockedURL(f"not a valid URL: {exc}") from exc
    if not parsed.scheme:
        raise BlockedURL("URL has no scheme; use http:// or https://")
    if parsed.scheme not in ALLOWED_SCHEMES:
        raise BlockedURL(f"scheme {parsed.scheme!r} is not allowed; use http or https")
    if not host:
        raise BlockedURL("URL has no host")
    problem = _host_problem(host, policy)
    if problem is not None:
        raise BlockedURL(problem)


@functools.lru_cache(maxsize=1024)
def _host_problem(host: str, policy: AddressPolicy | None) -> str | None:
    """Why ``host`` is refused under ``policy``, or None; a pure function of both, so cached
    (the session's guard checks every request, and ipaddress parsing is not cheap)."""
    if any(char.isspace() or ord(char) < 32 for char in host):
        return "host contains whitespace or control characters"
    try:
        literal = _literal_ip(host)
    except BlockedURL as exc:
        return exc.reason
    if policy is not None and literal is not None:
        reason = policy.block_reason(literal)
        if reason:
            return f"{host}: {reason}"
    return None


class GuardedResolver(AbstractResolver):
    """Resolves via ``inner`` (aiohttp's default) and refuses if any address is blocked.

    All-or-nothing rather than filtering: a name that points at internal addresses at all is
    suspicious, and silently dropping them would make failures depend on address order.
    """

    def __init__(
        self,
        inner: AbstractResolver | None = None,
        *,
        allow_loopback: bool = False,
        block_private: bool = False,
    ) -> None:
        # DefaultResolver needs a running loop: build sessions inside the worker's loop.
        self._inner = inner if inner is not None else DefaultResolver()
        self.policy = AddressPolicy(allow_loopback=allow_loopback, block_private=block_private)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if not results:
            raise OSError(f"no addresses for {host}")
        for result in results:
            reason = self._reason(result["host"])
            if reason is not None:
                logger.warning(
                    "refused a host that resolves to a blocked address",
                    extra={
                        "event": "notifications.ssrf_blocked",
                        "host": host,
                        "address": result["host"],
                        "reason": reason,
                    },
                )
                raise BlockedURL(f"{host} resolves to {result['host']}: {reason}")
        return results

    async def close(self) -> None:
        await self._inner.close()

    def _reason(self, address: str) -> str | None:
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:
            return "resolver returned something that is not an IP address"
        return self.policy.block_reason(parsed)


class RequestGuard:
    """Client middleware: checks each request's URL (every redirect hop included).

    Hostnames are checked by the resolver at connect time; this catches IP literals, which
    aiohttp connects to without asking the resolver, and explicit proxies, which would make
    aiohttp resolve the proxy instead of the target.
    """

    def __init__(self, policy: AddressPolicy) -> None:
        self.policy = policy

    async def __call__(
        self, request: aiohttp.ClientRequest, handler: ClientHandlerType
    ) -> aiohttp.ClientResponse:
        if request.proxy is not None:
            raise BlockedURL("requests through a proxy are not allowed")
        check_url(request.url, self.policy)
        return await handler(request)


def make_session(
    *,
    allow_loopback: bool,
    block_private: bool,
    limit: int,
    total_timeout: float = 15.0,
    connect_timeout: float = 5.0,
    dns_cache_ttl: int = 30,
    inner_resolver: AbstractResolver | None = None,
    trace_configs: list[aiohttp.TraceConfig] | None = None,
) -> aiohttp.ClientSession:
    """The one shared session for sending notifications; call inside the running loop."""
    resolver = GuardedResolver(
        inner_resolver, allow_loopback=allow_loopback, block_private=block_private
    )
    # aiohttp's DNS cache stores what the resolver RETURNED, i.e. addresses that already passed
    # the check (a refusal raises and caches nothing), so a cache hit cannot bypass the guard.
    # The policy is fixed per session, so cached answers cannot leak across policies either.
    connector = aiohttp.TCPConnector(resolver=resolver, limit=limit, ttl_dns_cache=dns_cache_ttl)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=total_timeout, connect=connect_timeout),
        # No proxies from the environment: through a proxy the target is never resolved here.
        trust_env=False,
        middlewares=(RequestGuard(resolver.policy),),
        headers={"User-Agent": USER_AGENT},
        trace_configs=trace_configs,
    )


def _literal_ip(host: str) -> IPAddress | None:
    """The address if ``host`` is an IP literal; BlockedURL if it is a numeric non-IP."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    last_label = host.rstrip(".").rsplit(".", 1)[-1].lower()
    # "2130706433", "127.1", "0x7f.1": resolvers turn these into addresses (127.0.0.1) that a
    # check of the written form would miss; WHATWG treats a numeric last label as IPv4.
    if last_label.isdigit() or last_label.startswith("0x"):
        raise BlockedURL(f"{host!r} is not a canonical IP address")
    return None


def _is_site_local(address: IPAddress) -> bool:
    # fec0::/10 is deprecated but still routed internally by some networks; ipaddress calls
    # it global.
    return isinstance(address, ipaddress.IPv6Address) and address.is_site_local


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address that an IPv6 form reaches (mapped, compatible, 6to4, NAT64)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None

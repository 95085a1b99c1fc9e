"""The periodic fallback of the Home Assistant integration: ``GET /api/states``, and
``on_state`` only for the entities that differ from what is stored.

The WebSocket client already fetches every state on each (re)connect; this pass catches what
could still slip through (a failed ``on_state`` write, an entity edited by hand here, a
change while the client was restarting). ``on_state`` is change-only itself; the diff
spares its database read for the thousands of unchanged entities.

What the periodic task (owned by the integrations app) does with it, every 300 s and only
while Home Assistant is configured and enabled::

    settings = <the HomeAssistantSettings built from the config row>   # None: skip the run
    known = {e.entity_id: KnownState(e.state, e.attributes)
             for e in Entity.objects.filter(source="home_assistant")}
    async with aiohttp.ClientSession() as session:
        result = await sync_states(settings, session=session,
                                   on_state=aupdate_entity_state, known=known)
    return result.as_dict()          # the TaskRun's result; SyncError fails the run
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp

from services.integrations.ha_protocol import EntityFilter, parse_states
from services.integrations.home_assistant import HomeAssistantSettings
from services.integrations.ws_support import EntityState, Malformed, OnState


@dataclass(frozen=True, slots=True)
class KnownState:
    """What is stored for an entity now."""

    state: str
    attributes: dict[str, Any]


@dataclass
class SyncResult:
    fetched: int = 0  # good states in the answer
    rejected: int = 0  # malformed items in it (skipped)
    filtered: int = 0  # left out by the include/exclude globs
    unchanged: int = 0
    changed: int = 0  # handed to on_state
    written: int = 0  # on_state said it changed something
    failed: int = 0  # on_state raised (the next pass tries again)
    missing: int = 0  # stored here, absent in Home Assistant (left as they are)
    errors: tuple[str, ...] = ()  # the first few on_state failures and rejected items

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "errors": list(self.errors)}


class SyncError(Exception):
    """Home Assistant could not be asked (unreachable, token refused, a bad answer)."""


def diff_states(
    fetched: Iterable[EntityState], known: Mapping[str, KnownState]
) -> tuple[list[EntityState], int]:
    """(states that differ from ``known`` or are new, how many are unchanged)."""
    changed, unchanged = [], 0
    for entity in fetched:
        stored = known.get(entity.entity_id)
        if stored is not None and (stored.state, stored.attributes) == (
            entity.state,
            entity.attributes,
        ):
            unchanged += 1
        else:
            changed.append(entity)
    return changed, unchanged


async def fetch_states(
    settings: HomeAssistantSettings, session: aiohttp.ClientSession
) -> tuple[list[EntityState], list[Malformed]]:
    """``GET /api/states`` with the bearer token; raises SyncError (never with the token)."""
    url = settings.rest_url("/api/states")
    headers = {"Authorization": f"Bearer {settings.token}", "Accept": "application/json"}
    try:
        async with session.get(
            url,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=settings.request_timeout),
            ssl=settings.verify_tls,
        ) as response:
            if response.status in (401, 403):
                raise SyncError(f"Home Assistant refused the token (HTTP {response.status})")
            if response.status != 200:
                raise SyncError(f"GET /api/states answered HTTP {response.status}")
            body = await _read_bounded(response, settings.max_frame_bytes)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise SyncError(f"GET /api/states failed: {type(exc).__name__}: {exc}") from None
    try:
        return parse_states(json.loads(body))
    except (ValueError, Malformed) as exc:
        raise SyncError(f"GET /api/states answered something else than a list: {exc}") from None


async def _read_bounded(response: aiohttp.ClientResponse, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in response.content.iter_chunked(2**16):
        size += len(chunk)
        if size > limit:
            raise SyncError(f"GET /api/states answered more than max_frame_bytes ({limit})")
        chunks.append(chunk)
    return b"".join(chunks)


async def sync_states(
    settings: HomeAssistantSettings,
    *,
    session: aiohttp.ClientSession,
    on_state: OnState,
    known: Mapping[str, KnownState],
    now: datetime | None = None,
) -> SyncResult:
    """One pass: fetch, diff against ``known``, hand the differences to ``on_state``."""
    states, rejected = await fetch_states(settings, session)
    wanted = EntityFilter(settings.include, settings.exclude)
    taken = [s for s in states if wanted(s.entity_id)]
    changed, unchanged = diff_states(taken, known)
    present = {s.entity_id for s in taken}
    result = SyncResult(
        fetched=len(states),
        rejected=len(rejected),
        filtered=len(states) - len(taken),
        unchanged=unchanged,
        changed=len(changed),
        missing=sum(1 for entity_id in known if entity_id not in present and wanted(entity_id)),
    )
    errors = [str(exc) for exc in rejected[:5]]
    now = now or datetime.now(UTC)
    for entity in changed:
        at = min(entity.last_changed, now) if entity.last_changed else None
        try:
            if await on_state(
                entity.entity_id, entity.state, entity.attributes,
                source="home_assistant", name=entity.name, at=at,
            ):  # fmt: skip
                result.written += 1
        except Exception as exc:
            result.failed += 1
            if len(errors) < 10:
                errors.append(f"{entity.entity_id}: {type(exc).__name__}: {exc}")
    result.errors = tuple(errors)
    return result

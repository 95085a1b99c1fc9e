"""The status page in headless Chromium (Playwright), served by a real daphne.

The status changes come from a StatusHub in this process (worker-like: its own ORM thread,
the real table, pushes through the real Redis to the daphne process). Skips, saying why,
where Chromium or the playwright package is missing (a fresh machine); .ci/run installs both.
"""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from realtime.hub import StatusHub
from services.clock import RealClock
from services.dbthread import AsyncStore
from tests.realtime_support import (  # noqa: F401 - fixtures
    PASSWORD,
    Daphne,
    daphne_fixture,
    make_user,
    realtime_group_fixture,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        importlib.util.find_spec("playwright") is None,
        reason="the playwright package is not installed (pip install -e '.[dev]')",
    ),
    pytest.mark.skipif(
        shutil.which(CHROMIUM) is None,
        reason=f"no Chromium at {CHROMIUM} (apt-get install chromium chromium-driver)",
    ),
]


class HubMqtt:
    """Where MQTT's status changes come from: a worker-like StatusHub told what happened.

    With the MQTT component merged, a driver with the same three methods that starts a
    private ``mosquitto -p <free port>``, spawns ``manage.py runworker`` with MQTT_URL on it,
    and then stops and starts that broker tests the whole chain; nothing else changes.
    """

    def __init__(self, hub: StatusHub) -> None:
        self.hub = hub

    async def up(self) -> None:
        self.hub.report("mqtt", "connected")

    async def down(self, reason: str) -> None:
        self.hub.report("mqtt", "disconnected", error=reason)

    async def settled(self) -> None:
        """Until the change is stored (the page may be away and must find it on return)."""
        async with asyncio.timeout(10):
            await self.hub.settled()


@pytest.fixture
async def mqtt(stores: list[AsyncStore]) -> AsyncIterator[HubMqtt]:
    store_ = AsyncStore()
    stores.append(store_)
    hub = StatusHub(RealClock(), store_.call, worker_id="browser-test")
    stopping = asyncio.Event()
    task = asyncio.create_task(hub.run(stopping))
    async with asyncio.timeout(10):
        await hub.settled()
    yield HubMqtt(hub)
    stopping.set()
    await task


@pytest.fixture
async def page() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield await browser.new_page()
        finally:
            await browser.close()


async def test_the_page_follows_mqtt_live(
    daphne: Daphne, mqtt: HubMqtt, page: Any, db_call: Any
) -> None:
    from playwright.async_api import expect

    user = await db_call(make_user)
    await page.goto(daphne.http + "/")
    assert "/accounts/login/" in page.url  # login required
    await page.fill("#id_username", user.username)
    await page.fill("#id_password", PASSWORD)
    await page.click("button[type=submit]")
    badge = page.locator('tr[data-integration="mqtt"] [data-field="state"]')
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await expect(badge).to_have_text("not configured")
    await expect(
        page.locator('tr[data-integration="home_assistant"] [data-field="state"]')
    ).to_have_text("not configured")

    for change, shown in [
        (mqtt.up, "connected"),
        (lambda: mqtt.down("broker stopped"), "disconnected"),
        (mqtt.up, "connected"),
    ]:
        changed = time.monotonic()
        await change()
        await expect(badge).to_have_text(shown, timeout=1000)  # within a second
        print(f"mqtt {shown}: shown after {1000 * (time.monotonic() - changed):.0f} ms")
    await expect(
        page.locator('tr[data-integration="mqtt"] [data-field="last_error"]')
    ).to_have_text("broker stopped")

    # The web process goes away; a change meanwhile reaches the page from the fresh
    # snapshot once it has reconnected (with backoff) to the new web process.
    connection = page.locator("#connection")
    await expect(connection).to_have_attribute("data-connects", "1")
    restarted = daphne.restart()
    try:
        await expect(connection).to_have_attribute("data-connects", "2", timeout=20000)
        await mqtt.down("after the restart")
        await expect(badge).to_have_text("disconnected", timeout=1000)
        restarted.stop()
        await mqtt.up()  # nobody is listening: only the table has it
        await mqtt.settled()
        restarted = restarted.restart()
        await expect(connection).to_have_attribute("data-connects", "3", timeout=20000)
        await expect(badge).to_have_text("connected")
    finally:
        restarted.stop()

"""The status page in headless Chromium (Playwright), served by a real daphne.

MQTT's status comes from the whole chain: a private broker (mosquitto, or the amqtt broker
where mosquitto is missing) that the test stops and starts, and a ``manage.py runworker``
connected to it (``MQTT_URL``), whose status hub stores each change and pushes it through the
real Redis to the daphne process. Skips, saying why, where Chromium or the playwright package
is missing (a fresh machine); .ci/run installs both.
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from services.integrations.models import IntegrationConfig
from services.models import ScheduledJob
from tests.acceptance.conftest import Worker, free_port
from tests.integration.integrations.brokers import PrivateBroker
from tests.realtime_support import (  # noqa: F401 - fixtures
    PASSWORD,
    Daphne,
    daphne_env,
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


class LiveMqtt:
    """Where MQTT's status changes come from: a real broker, and a worker connected to it.

    ``up()``: the first call starts the worker (the broker is running), later ones start the
    broker again; ``down()`` stops the broker (SIGTERM); ``settled()`` returns once the
    worker's hub took the state that leads to (its ``realtime.status_changed`` line): the
    change is then being stored, so a page that is away finds it on return.
    """

    def __init__(self, broker: PrivateBroker, env: dict[str, str]) -> None:
        self.broker, self.env = broker, env
        self.worker: Worker | None = None
        self._expected = ""
        self._seen = 0  # status_changed lines of the worker already looked at

    async def up(self) -> None:
        self._expect("online")
        if self.worker is None:
            # cron too: the page's runs table follows the runs it records.
            self.worker = Worker(self.env, "--only", "leadership,mqtt,status,cron")
        else:
            await asyncio.to_thread(self.broker.start)

    async def down(self) -> None:
        self._expect("offline")
        await asyncio.to_thread(self.broker.stop)

    async def settled(self) -> str:
        return await asyncio.to_thread(self._wait_for_state)

    def errors(self) -> set[str]:
        """The errors the worker logged for lost or failed connections (the page shows one)."""
        assert self.worker is not None
        self.worker.log()  # takes the lines read so far
        lost = ("event=mqtt.disconnected", "event=mqtt.connect_failed")
        found = set()
        for line in self.worker.lines:
            match = re.search(r"error='([^']*)'", line)
            if match and any(key in line.split() for key in lost):
                found.add(match.group(1))
        return found

    def _expect(self, state: str) -> None:
        self._expected = state
        if self.worker is not None:
            self.worker.log()  # what the worker logged before this change is not its result
            self._seen = self.worker.count("realtime.status_changed")

    def _wait_for_state(self) -> str:
        assert self.worker is not None
        wanted = ("integration='mqtt'", f"to_state='{self._expected}'")
        while True:
            lines = self.worker.wait_count("realtime.status_changed", self._seen + 1)
            new, self._seen = lines[self._seen :], len(lines)
            for line in new:
                if all(part in line for part in wanted):
                    return line

    def close(self) -> None:
        if self.worker is not None:
            self.worker.kill()


@pytest.fixture
async def mqtt(realtime_group: str, tmp_path: Path, db_call: Any) -> AsyncIterator[LiveMqtt]:
    broker = PrivateBroker(tmp_path)
    broker.start()
    # Reconnects within half a second (the default backoff goes up to 120 s), and no MQTT 5
    # attempt where the broker is amqtt (3.1.1 only: it would wait out the connect timeout).
    fast: dict[str, Any] = {"reconnect_min": 0.2, "reconnect_max": 0.5}
    if broker.kind == "amqtt":
        fast["protocol"] = "3.1.1"
    await db_call(IntegrationConfig.objects.create, kind="mqtt", settings=fast)
    env = daphne_env(
        realtime_group,
        MQTT_URL=broker.url,
        WORKER_HEALTH_PORT=str(free_port()),
        WORKER_TASK_MODULES="",  # the real tasks only: daily ones, nothing due
        LOG_LEVEL="INFO",
    )
    live = LiveMqtt(broker, env)
    try:
        yield live
    finally:
        live.close()
        broker.stop()


def request_run(name: str) -> int:
    """The admin's "run now": the worker is NOTIFYed and runs it at once."""
    return ScheduledJob.objects.filter(name=name).update(run_requested_at=timezone.now())


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
    daphne: Daphne, mqtt: LiveMqtt, page: Any, db_call: Any
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
    await expect(badge).to_have_text("not configured")  # no worker has reported yet
    await expect(
        page.locator('tr[data-integration="home_assistant"] [data-field="state"]')
    ).to_have_text("not configured")

    # The worker starts, and connects; the broker stops; the broker returns. Only the
    # disconnect has a one-second bound: a connect waits for the start or the backoff.
    for change, shown, within in [
        (mqtt.up, "connected", 20000),
        (mqtt.down, "disconnected", 1000),
        (mqtt.up, "connected", 10000),
    ]:
        changed = time.monotonic()
        await change()
        await expect(badge).to_have_text(shown, timeout=within)
        print(f"mqtt {shown}: shown {1000 * (time.monotonic() - changed):.0f} ms after the change")
        await mqtt.settled()
    last_error = page.locator('tr[data-integration="mqtt"] [data-field="last_error"]')
    assert await last_error.text_content() in mqtt.errors()  # "connection lost", ...

    # A run in the worker shows in the runs table, pushed (nothing re-reads it on a timer).
    assert await db_call(request_run, "cleanup_expired_sessions") == 1
    newest = page.locator("#runs tbody tr").first.locator("td")
    await expect(newest.nth(0)).to_have_text("cleanup_expired_sessions")
    await expect(newest.nth(1)).to_have_text("success")
    await expect(newest.nth(2)).to_have_text("manual")

    # The web process goes away; a change meanwhile reaches the page from the fresh
    # snapshot once it has reconnected (with backoff) to the new web process.
    connection = page.locator("#connection")
    await expect(connection).to_have_attribute("data-connects", "1")
    restarted = daphne.restart()
    try:
        await expect(connection).to_have_attribute("data-connects", "2", timeout=20000)
        await mqtt.down()
        await expect(badge).to_have_text("disconnected", timeout=1000)
        await mqtt.settled()
        restarted.stop()
        await mqtt.up()  # nobody is listening: only the table has it
        await mqtt.settled()
        restarted = restarted.restart()
        await expect(connection).to_have_attribute("data-connects", "3", timeout=20000)
        await expect(badge).to_have_text("connected")
    finally:
        restarted.stop()

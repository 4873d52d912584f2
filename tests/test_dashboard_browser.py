"""The dashboard in a real browser (Debian's Chromium driven by Playwright) against a real daemon
fed over MQTT by a private Mosquitto.

One broker, one daemon and one browser serve the whole module (each test opens its own browser
context, so cookies never leak from one to the next); the tests run in file order and build on
each other's incidents: the fiber cut published by the first is the one the next ones open,
acknowledge and filter. Each page is screenshotted into ``artifacts/dashboard/`` (git-ignored).

Skipped when Chromium, Playwright or Mosquitto is missing (``.ci/run`` installs Chromium and
Mosquitto with apt-get; Playwright comes with the dev extras).
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_asyncio

from bench.scenarios import alarm, fiber_cut
from engine.adapters.http import HttpApi
from engine.service.config import HttpSettings
from engine.service.daemon import Daemon
from engine.tools.receiver import WebhookReceiver
from tests.daemon_harness import publish, running_daemon, until, with_prefix
from tests.mosquitto import Mosquitto, find_binary

playwright_api = pytest.importorskip("playwright.async_api")

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts" / "dashboard"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PREFIX = "test/dashboard-browser"
ROOT_KEY = "agg-3:lossOfSignal:port 1/1/1"
TOKEN = "browser-test-token"
EVIL = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'
AXE = (ROOT / "tests" / "vendor" / "axe.min.js").read_text()

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed (.ci/run installs it)"),
    pytest.mark.skipif(find_binary() is None, reason="mosquitto is not installed (.ci/run installs it)"),
]


@dataclass
class Env:
    daemon: Daemon
    rx: WebhookReceiver
    broker: str
    base: str
    browser: Any
    csp_errors: list[str] = field(default_factory=list)
    state: dict[str, str] = field(default_factory=dict)

    async def page(self, **options: Any) -> Any:
        """A fresh context (its own cookies) and a page in it; CSP reports are collected."""
        context = await self.browser.new_context(viewport={"width": 1440, "height": 900}, **options)
        page = await context.new_page()

        def on_console(msg: Any) -> None:
            if "Content Security Policy" in msg.text or "Content-Security-Policy" in msg.text:
                self.csp_errors.append(f"{page.url}: {msg.text}")

        page.on("console", on_console)
        return page


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    folder = tmp_path_factory.mktemp("dashboard")
    broker = Mosquitto(folder / "mosquitto")
    broker.start()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        async with (
            running_daemon(folder / "engine", broker_url=broker.url, prefix=PREFIX) as (daemon, rx),
            playwright_api.async_playwright() as pw,
        ):
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            assert daemon.http is not None
            try:
                yield Env(daemon, rx, broker.url, f"http://127.0.0.1:{daemon.http.port}", browser)
            finally:
                await browser.close()
    finally:
        broker.stop()


async def shot(page: Any, name: str) -> None:
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def opened_record(env: Env) -> dict[str, Any]:
    return next(
        r for r in env.rx.records if r.get("event") == "opened" and r["root_cause"]["alarm_id"] == ROOT_KEY
    )


async def test_an_incident_appears_live_without_a_reload(env: Env) -> None:
    page = await env.page()
    await page.goto(f"{env.base}/")
    assert page.url == f"{env.base}/ui/"
    await page.wait_for_selector("text=No open incidents.")
    await page.evaluate("window.__same_page = 42")  # gone if the page were reloaded
    await page.wait_for_timeout(300)  # the event stream is connected
    await publish(env.broker, with_prefix(fiber_cut()[:51], PREFIX))
    row = page.locator("tr[data-incident]", has_text="agg-3")
    await row.wait_for(timeout=20_000)
    assert await page.evaluate("window.__same_page") == 42
    assert await row.locator(".prio").inner_text() == "P1"
    assert "Outage" in await row.inner_text()
    assert "platinum 20" in await row.inner_text()
    assert await page.locator("nav.counts a.count.p1 b").inner_text() == "1"
    env.state["incident"] = await row.get_attribute("data-incident") or ""
    await shot(page, "incidents")
    await page.emulate_media(color_scheme="dark")
    await shot(page, "incidents-dark")
    await page.context.close()


async def test_the_detail_shows_the_suppression_tree_and_the_impact(env: Env) -> None:
    page = await env.page()
    await page.goto(f"{env.base}/ui/")
    await page.locator("tr[data-incident] a.open", has_text="agg-3").click()
    await page.wait_for_selector("#tree-title")
    assert page.url.endswith(f"/ui/incidents/{env.state['incident']}")
    tree = page.locator("ul.tree")
    assert await tree.locator("code", has_text=ROOT_KEY).count() >= 1
    assert await tree.locator(".reason").count() == 50
    assert "default/topology-root-cause" in await tree.locator(".reason").first.inner_text()
    tiers = page.locator("table", has=page.locator("caption", has_text="Customers by SLA tier"))
    assert "platinum" in await tiers.inner_text()
    assert await tiers.locator("tr", has_text="bronze").locator("td").first.inner_text() == "600"
    assert "Priority breakdown" in await page.locator("#prio-title").inner_text()
    timeline = await page.locator("ol.timeline").inner_text()
    assert "opened" in timeline
    assert "51 alarms (50 suppressed)" in timeline
    # Times: UTC here (the browser's zone), and in Tokyo time for a browser there, UTC on hover
    opened = page.locator(".facts time").first
    assert (await opened.get_attribute("title") or "").endswith("UTC")
    tokyo = await env.page(timezone_id="Asia/Tokyo")
    await tokyo.goto(page.url)
    local = tokyo.locator(".facts time").first
    assert "GMT+9" in await local.inner_text()
    assert (await local.get_attribute("title") or "").endswith("UTC")
    await tokyo.context.close()
    await shot(page, "incident")
    await page.emulate_media(color_scheme="dark")
    await shot(page, "incident-dark")
    await page.context.close()


async def test_ack_from_the_form_updates_the_record_and_the_webhook(env: Env) -> None:
    iid = env.state["incident"]
    page = await env.page()
    await page.goto(f"{env.base}/ui/incidents/{iid}")
    await page.fill("input[name=by]", "alice")
    await page.fill("input[name=note]", "fibre team dispatched")
    await page.click("#ack-form button[type=submit]")
    await page.wait_for_selector("text=✓ by alice")
    assert "acknowledged by alice: fibre team dispatched" in await page.locator("ol.timeline").inner_text()
    record = env.daemon.incident(iid)
    assert record is not None
    assert record["acknowledged"]["by"] == "alice"
    assert record["acknowledged"]["note"] == "fibre team dispatched"
    await until(
        lambda: any((r.get("acknowledged") or {}).get("by") == "alice" for r in env.rx.records),
        timeout=10,
        what="the acknowledged record at the webhook",
    )
    # Another acknowledgement (through the API's path) shows on this page without a reload
    await page.evaluate("window.__same_page = 7")
    await env.daemon.acknowledge(iid, by="bob", note="taking over")
    await page.locator(".facts", has_text="✓ by bob").wait_for(timeout=10_000)
    assert await page.evaluate("window.__same_page") == 7
    await page.goto(f"{env.base}/ui/?ack=yes")
    assert "✓ bob" in await page.locator("tr[data-incident]").first.inner_text()
    await page.context.close()


async def test_filters_live_in_the_url_and_survive_a_reload(env: Env) -> None:
    page = await env.page()
    await page.goto(f"{env.base}/ui/")
    await page.select_option("select[name=priority]", "1")
    await page.select_option("select[name=region]", "south")
    await page.click("form.filters button[type=submit]")
    await page.wait_for_url("**/ui/?priority=1&region=south*")
    await page.reload()
    assert await page.locator("select[name=priority]").input_value() == "1"
    assert await page.locator("select[name=region]").input_value() == "south"
    assert await page.locator("tr[data-incident]", has_text="agg-3").count() == 1
    await page.select_option("select[name=state]", "degraded")
    await page.click("form.filters button[type=submit]")
    await page.wait_for_selector("text=No open incident matches these filters.")
    assert "state=degraded" in page.url
    await page.context.close()


async def test_every_alarm_field_is_escaped(env: Env) -> None:
    evil_alarm = alarm("olt-7", EVIL, 5, "major", sp=EVIL)
    evil_alarm["payload"]["text"] = EVIL
    await publish(env.broker, with_prefix([evil_alarm], PREFIX))
    page = await env.page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: dialogs.append(d.message))
    await page.goto(f"{env.base}/ui/")
    row = page.locator("tr[data-incident]", has_text="olt-7")
    await row.wait_for(timeout=20_000)
    assert EVIL in await row.inner_text()  # shown as text, literally
    await row.locator("a.open").click()
    await page.wait_for_selector("#tree-title")
    assert EVIL in await page.locator("hgroup.title").inner_text()
    assert await page.evaluate("window.__xss") is None
    assert dialogs == []
    await shot(page, "escaping")
    await page.context.close()


async def test_login_with_the_token_sets_an_httponly_cookie(env: Env) -> None:
    async with HttpApi(HttpSettings(port=0, token=TOKEN), env.daemon, env.daemon.metrics) as api:
        base = f"http://127.0.0.1:{api.port}"
        page = await env.page()
        await page.goto(f"{base}/ui/?priority=1")
        assert "/ui/login" in page.url
        await shot(page, "login")
        await page.fill("input[name=token]", "wrong")
        await page.click("button[type=submit]")
        await page.wait_for_selector("text=That token is not valid.")
        await page.fill("input[name=token]", TOKEN)
        await page.click("button[type=submit]")
        await page.wait_for_url(f"{base}/ui/?priority=1")
        await page.locator("tr[data-incident]", has_text="agg-3").wait_for()
        (cookie,) = await page.context.cookies()
        assert cookie["httpOnly"] is True
        assert cookie["sameSite"] == "Strict"
        assert TOKEN not in cookie["value"]
        assert await page.evaluate("document.cookie") == ""  # not readable by a script
        # The session ends (cookie gone) while the list is open: the next live refresh takes the
        # whole page to the form, and the form back to the page
        await page.wait_for_timeout(300)  # the event stream is connected
        await page.context.clear_cookies()
        await env.daemon.acknowledge(env.state["incident"], by="carol", note=None)
        await page.wait_for_url(f"{base}/ui/login?next=%2Fui%2F%3Fpriority%3D1", timeout=10_000)
        await page.fill("input[name=token]", TOKEN)
        await page.click("button[type=submit]")
        await page.wait_for_url(f"{base}/ui/?priority=1")
        await page.click("text=Sign out")
        await page.wait_for_url(f"{base}/ui/login")
        await page.goto(f"{base}/ui/")
        assert "/ui/login" in page.url
        await page.context.close()


async def test_alarms_page_lists_roots_and_symptoms_with_filters(env: Env) -> None:
    page = await env.page()
    await page.goto(f"{env.base}/ui/alarms?suppressed=yes&element=olt-0")
    rows = page.locator("table.alarms tbody tr")
    assert await rows.count() == 50
    assert ROOT_KEY in await rows.first.inner_text()  # suppressed by the root
    await page.goto(f"{env.base}/ui/alarms?suppressed=no")
    text = await page.locator("table.alarms").inner_text()
    assert ROOT_KEY.split(":", maxsplit=1)[0] in text
    assert EVIL in text  # the attacker's alarm, as text
    await shot(page, "alarms")
    await page.goto(f"{env.base}/ui/alarms?severity=bogus")
    assert "severity: expected one of critical" in await page.locator("main").inner_text()
    await page.context.close()


async def test_element_page_draws_its_neighbourhood(env: Env) -> None:
    page = await env.page()
    await page.goto(f"{env.base}/ui/incidents/{env.state['incident']}")
    await page.locator(".facts a", has_text="agg-3").click()
    await page.wait_for_url("**/ui/elements/agg-3")
    assert "down" in await page.locator("hgroup.title").inner_text()
    await page.wait_for_selector("#graph[data-ready]")
    assert (
        int(await page.get_attribute("#graph", "data-ready") or 0) == 11
    )  # core-1, agg-3, 8 OLTs, "+42 more"
    assert await page.locator("table tbody tr", has_text="lossOfSignal").count() == 1
    assert "42 more not drawn" in await page.locator("details.neighbours summary").inner_text()
    await shot(page, "element")
    # A click on a node of the graph opens that element
    x, y = await page.evaluate(
        "() => { const p = document.getElementById('graph').cy.$id('core-1').renderedPosition();"
        " return [p.x, p.y]; }"
    )
    await page.locator("#graph").click(position={"x": x, "y": y})
    await page.wait_for_url("**/ui/elements/core-1")
    graph = await (await page.request.get(f"{env.base}/ui/elements/olt-7/graph.json")).json()
    nodes = {n["data"]["id"]: n["data"] for n in graph["elements"]["nodes"]}
    assert nodes["agg-1"]["parent"] == nodes["agg-2"]["parent"] == "group:agg-1|agg-2"
    assert nodes["olt-7"]["health"] == "degraded"
    assert "degraded" in nodes["olt-7"]["label"]  # the health in words, not only in colour
    assert {"core-1", "pwr-c", "cell-c1"} <= set(nodes)
    await page.context.close()


async def test_operations_page_shows_dead_letters_receivers_rules_and_reloads(env: Env) -> None:
    await publish(env.broker, [(f"{PREFIX}/alarms/olt-001", b'{"ne_id": "olt-001", "severity": "loud"')])
    page = await env.page()
    await page.goto(f"{env.base}/ui/operations")
    await until(lambda: bool(env.daemon.store.dead_letters(limit=1)), timeout=10, what="the dead letter")
    await page.reload()
    dead = page.locator("section", has=page.locator("#dl-title"))
    assert "malformed JSON" in await dead.inner_text()
    receivers = await page.locator("section", has=page.locator("#rx-title")).inner_text()
    assert "noc" in receivers
    assert "closed" in receivers
    rule = page.locator("tr", has=page.locator("code", has_text="default/topology-root-cause"))
    assert (await rule.locator("td.num").last.inner_text()).strip() == "50"  # suppresses now
    assert int(await rule.locator("td.num").first.inner_text()) >= 50  # firings: one join per symptom
    await shot(page, "operations")
    await page.click("text=Reload rulesets and topology")
    await page.wait_for_selector("text=✓ Reloaded")
    assert "reloaded (" in await page.locator(".flash").inner_text()
    assert env.daemon.last_reload is not None
    assert env.daemon.last_reload["ok"] is True
    await page.context.close()


async def test_service_quality_charts_a_scopes_kqis_with_their_thresholds(env: Env) -> None:
    now = time.time()
    samples = [
        {
            "probe_id": "p-dash",
            "target": "olt-010",
            "service": "voip",
            "time": now - 90 + 5 * i,
            "metrics": {"latency_ms": 40.0 + i, "jitter_ms": 4.0, "loss_pct": 0.1},
        }
        for i in range(18)
    ]
    await publish(env.broker, [(f"{PREFIX}/probes/p-dash", orjson.dumps(s)) for s in samples])
    page = await env.page()
    await until(
        lambda: "ne:olt-010/voip" in env.daemon.pipeline.quality.windows.scopes(), timeout=10, what="samples"
    )
    await page.goto(f"{env.base}/ui/quality?scope=ne:olt-010/voip")
    await page.wait_for_selector("#charts[data-ready]")
    assert int(await page.get_attribute("#charts", "data-ready") or 0) >= 3  # latency, jitter, loss (mos)
    caption = await page.locator("figcaption", has_text="latency_ms").inner_text()
    assert "voip.one_way_delay: target 150" in caption
    assert "limit 400" in caption
    assert await page.locator(".uplot canvas").count() >= 3
    services = await page.locator("section", has=page.locator("#svc-title")).inner_text()
    assert "voip" in services
    assert "internet" in services
    await shot(page, "quality")
    await page.goto(f"{env.base}/ui/quality?scope=ne:nowhere/voip")
    assert "No samples" in await page.locator("main").inner_text()
    await page.context.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
async def test_pages_pass_axe_accessibility_checks(env: Env, scheme: str) -> None:
    page = await env.page(bypass_csp=True, color_scheme=scheme)  # axe is injected as an inline script
    found: dict[str, list[str]] = {}
    paths = (
        "/ui/",
        f"/ui/incidents/{env.state['incident']}",
        "/ui/alarms",
        "/ui/elements/olt-7",
        "/ui/operations",
    )
    for path in paths:
        await page.goto(f"{env.base}{path}")
        await page.wait_for_selector("main")
        await page.add_script_tag(content=AXE)
        result = await page.evaluate(
            "async () => (await axe.run(document, {resultTypes: ['violations']})).violations.map(v =>"
            " v.id + ' (' + v.impact + '): ' + v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(', '))"
        )
        if result:
            found[path] = result
    assert found == {}
    await page.context.close()


async def test_no_content_security_policy_violation_was_reported(env: Env) -> None:
    await asyncio.sleep(0)
    assert env.csp_errors == []

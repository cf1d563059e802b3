"""The dashboard in a real headless Chromium (Debian's chromium +
chromium-driver, driven by selenium): it loads with no console error, the
chart holds the sampled points, the tables fill, it refreshes as the
service changes, alerts show what fired. A screenshot is kept as a test
artifact (build/test-artifacts/dashboard.png, or $TASKLEAK_ARTIFACTS).

The tests in Chromium are once_per_ci (tests/conftest.py): the page and its
script are the same on every CPython, and the endpoints it reads are tested
on every version by test_serve.py and test_native_answers.py, so .ci/run
runs them on 3.11 and 3.15 only. The packaging test below runs everywhere."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import re
import subprocess
import threading
import time

import pytest
from live_service import Service, get_json

import taskleak

ROOT = pathlib.Path(__file__).resolve().parent.parent
ARTIFACTS = pathlib.Path(os.environ.get("TASKLEAK_ARTIFACTS", ROOT / "build" / "test-artifacts"))

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the Makefile's DEV_DEPS")


def _chromium() -> tuple:
    """(chromium, chromedriver), installed by tools/ensure_chromium.sh when missing."""
    r = subprocess.run([str(ROOT / "tools" / "ensure_chromium.sh")], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    browser, driver = r.stdout.split()[-2:]
    return browser, driver


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.service import Service as DriverService

    chromium, chromedriver = _chromium()
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1100",
        "--no-first-run",
        "--disable-extensions",
    ):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # Under `make test-asan` this process runs with ASan preloaded; the
    # browser and its driver must not inherit that.
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS")}
    drv = webdriver.Chrome(options=opts, service=DriverService(executable_path=chromedriver, env=env))
    drv.set_page_load_timeout(60)
    yield drv
    drv.quit()


async def stuck(ev: asyncio.Event) -> None:
    await ev.wait()


async def late_arrival(ev: asyncio.Event) -> None:
    await ev.wait()


def _wait(fn, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


_PAGE = """
const q = s => Array.from(document.querySelectorAll(s));
return {
  refreshes: parseInt(document.body.dataset.refreshes || "0"),
  samples: parseInt(document.body.dataset.samples || "0"),
  pending_points: q("#chart-tasks circle.pt.pending").map(c => [parseFloat(c.getAttribute("data-t")), parseFloat(c.getAttribute("data-v"))]),
  done_points: q("#chart-tasks circle.pt.done_retained").length,
  rss_points: q("#chart-rss circle.pt.rss").length,
  v_pending: document.getElementById("v-pending").textContent,
  group_rows: q("#groups tbody tr").map(r => r.textContent),
  dump: q("#dump details.group").map(d => ({summary: d.querySelector("summary").textContent, open: d.open,
                                            chain: (d.querySelector("ol.chain") || {textContent: ""}).textContent})),
  alert_rows: q("#alerts tbody tr").map(r => r.textContent),
  alerts_empty_hidden: document.getElementById("alerts-empty").hidden,
  status_class: document.getElementById("status").className,
  status: document.getElementById("status").textContent,
};
"""


def _page(drv) -> dict:
    """Everything the tests read from the page, in one atomic look (the page redraws under us)."""
    return drv.execute_script(_PAGE)


def _errors(drv) -> list:
    return [e for e in drv.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


def _banner_naming(drv, function: str) -> str:
    """The blocked-loop banner's text, once it shows and names `function`."""
    script = "const b = document.getElementById('blocked-now'); return b.hidden ? '' : b.textContent"
    return _wait(
        lambda: (lambda t: t if t and function in t else None)(drv.execute_script(script)),
        "the banner",
        timeout=4.0,
    )


def _fresh(drv) -> None:
    """Leave the previous test's page (whose server may be gone) and drop
    what it logged, so that a test counts only its own console errors."""
    drv.get("about:blank")
    drv.get_log("browser")


@pytest.mark.once_per_ci
def test_dashboard_in_chromium(browser):
    taskleak.install()
    svc = Service()
    ev = svc.call(asyncio.Event)
    svc.spawn(stuck, 12, "stuck", ev)
    # A detector that reacts within seconds, so that an alert shows on the page.
    mon = taskleak.Monitor(
        interval=0.1,
        window=8,
        consecutive=2,
        detector_options={"min_rise": 5, "min_stddev": 1.0},
        count_rules=True,  # the count rules react within seconds; the stale signal needs lifetimes
    ).start()
    srv = taskleak.serve(monitor=mon)
    try:
        _wait(lambda: len(mon.samples()) >= 3, "three samples")
        browser.get(srv.url + "?refresh=0.3")
        _wait(lambda: _page(browser)["refreshes"] >= 1, "the first refresh")
        page = _page(browser)

        # The chart holds the sampled points: one circle per sample and series.
        n = page["samples"]
        assert n >= 3
        assert len(page["pending_points"]) == n and page["done_points"] == n and page["rss_points"] == n
        served = {s["time"]: s for s in get_json(srv.url, "/api/samples")["samples"]}
        for t, v in page["pending_points"][-3:]:
            assert v == served[t]["pending"]

        # The tables fill.
        assert int(page["v_pending"]) >= 12
        assert any("stuck" in r and "live_service.py" in r for r in page["group_rows"])
        g = next(d for d in page["dump"] if "stuck()" in d["summary"])
        assert g["summary"].startswith("12 pending, stuck(), waiting on Event.wait()")
        browser.execute_script("""
            const d = Array.from(document.querySelectorAll('#dump details.group')).find(d => d.textContent.includes('stuck()'));
            d.querySelector('summary').click();""")
        g = next(d for d in _page(browser)["dump"] if "stuck()" in d["summary"])
        assert g["open"] and "Event.wait" in g["chain"] and "stuck" in g["chain"]

        # It refreshes as the service changes: 40 new tasks, then more, so the detector fires.
        before = _page(browser)["refreshes"]
        svc.spawn(late_arrival, 40, "late", ev)
        _wait(
            lambda: any("late_arrival()" in d["summary"] for d in _page(browser)["dump"]), "the new group on the page"
        )
        assert _page(browser)["refreshes"] > before
        _wait(lambda: int(_page(browser)["v_pending"]) >= 52, "the new pending count")
        opened = [d for d in _page(browser)["dump"] if "stuck()" in d["summary"]]
        assert opened and opened[0]["open"]  # kept open across refreshes
        for _ in range(6):
            svc.spawn(late_arrival, 40, "late", ev)
            if mon.alerts():
                break
            time.sleep(0.4)
        alert = _wait(lambda: mon.alerts(), "an alert", 30)[0]
        _wait(lambda: _page(browser)["alert_rows"], "the alert on the page")
        page = _page(browser)
        assert any(alert.signal in r and alert.text.splitlines()[0][:40] in r for r in page["alert_rows"])
        assert page["alerts_empty_hidden"]

        time.sleep(1.5)  # let the cached task listing catch up and redraw, then keep a picture
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "dashboard.png"
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        assert _errors(browser) == []
        assert _page(browser)["status_class"] == "status"
    finally:
        srv.close()
        mon.stop()
        svc.call(ev.set)
        svc.stop()


@pytest.mark.once_per_ci
def test_dashboard_with_a_token_and_offline(browser):
    from selenium.webdriver.common.by import By

    token = "dashboard-token-0123456789"
    srv = taskleak.serve(host="127.0.0.1", token=token, interval=0.1)
    try:
        # Without the token the page itself is refused.
        browser.get(srv.url)
        assert "a valid token is required" in browser.find_element(By.TAG_NAME, "body").text
        browser.get_log("browser")  # that 401 was expected
        browser.get(srv.url + f"?token={token}&refresh=0.3")
        _wait(lambda: _page(browser)["refreshes"] >= 2, "two refreshes")
        assert _errors(browser) == []
        # Nothing was loaded from anywhere but this server.
        urls = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert urls and all(u.startswith(srv.url.rstrip("/")) for u in urls), urls
        # When the process goes away the page says so instead of breaking.
        srv.close()
        _wait(lambda: "cannot reach the process" in _page(browser)["status"], "the error status")
        browser.get_log("browser")  # the failed fetches after close were expected
    finally:
        srv.close()


def test_assets_are_installed_in_the_package():
    import importlib.resources

    files = importlib.resources.files("taskleak.live").joinpath("assets")
    names = sorted(p.name for p in files.iterdir())
    assert names == ["dashboard.css", "dashboard.js", "favicon.svg", "index.html"]
    assert "site-packages" in str(files) or "dist-packages" in str(files) or os.environ.get("TASKLEAK_SRC_TEST")
    page = files.joinpath("index.html").read_text()
    assert "http://" not in page and "https://" not in page  # no CDN, works offline
    js = files.joinpath("dashboard.js").read_text()
    assert "innerHTML" not in js  # process text is never parsed as HTML
    json.dumps(names)


async def slow_handler() -> None:
    time.sleep(0.4)  # blocks the service's loop: the line the panel must name


_BLOCKED = """
const q = s => Array.from(document.querySelectorAll(s));
return {
  refreshes: parseInt(document.body.dataset.refreshes || "0"),
  card: document.getElementById("v-blocked").textContent,
  card_alerting: document.getElementById("card-blocked").classList.contains("alerting"),
  summary: document.getElementById("blocked-summary").textContent,
  empty_hidden: document.getElementById("blocked-empty").hidden,
  rows: q("#blocked-episodes tbody tr").map(r => ({seq: r.dataset.seq, cells: Array.from(r.cells).map(c => c.textContent),
                                                   stack: Array.from(r.querySelectorAll("ol.stack li")).map(li => li.textContent),
                                                   open: !!r.querySelector("details[open]")})),
  points: q("#chart-blocked circle.pt.blocked").map(c => [parseFloat(c.getAttribute("data-t")), parseFloat(c.getAttribute("data-v"))]),
  threshold_lines: q("#chart-blocked line.threshold").length,
};
"""


@pytest.mark.once_per_ci
def test_dashboard_blocked_loop_panel(browser):
    """A real blocked loop (time.sleep in a task) fills the blocked-loop
    panel: the count and seconds, a point on the chart, and a row naming
    the line that blocked, whose stack opens."""
    svc = Service()
    mon = taskleak.Monitor(interval=0.2).start()
    srv = taskleak.serve(monitor=mon)
    watch = None
    try:
        before = get_json(srv.url, "/api/blocked")
        browser.get(srv.url + "?refresh=0.3")
        _wait(lambda: browser.execute_script(_BLOCKED)["refreshes"] >= 1, "the first refresh")
        page = browser.execute_script(_BLOCKED)
        if not before["watching"] and before["blocks"] == 0:
            assert page["card"] == "not watched" and "watchdog off" in page["summary"]
            assert "Not watched" in browser.execute_script(
                "return document.getElementById('blocked-empty').textContent"
            )

        # Watch from the service's own loop (watching starts with the loop running where it is asked).
        watch = svc.call(lambda: taskleak.watch_blocking(0.1))
        _wait(lambda: "watchdog on, threshold 100.0 ms" in browser.execute_script(_BLOCKED)["summary"], "watchdog on")
        if before["kept"] == 0:  # earlier tests of this process may have recorded episodes
            assert "no episode yet" in browser.execute_script(
                "return document.getElementById('chart-blocked').textContent"
            )

        svc.spawn(slow_handler, 1, "slow")
        page = _wait(
            lambda: (lambda p: p if p["rows"] and any("slow_handler" in r["cells"][2] for r in p["rows"]) else None)(
                browser.execute_script(_BLOCKED)
            ),
            "the episode on the page",
        )
        served = get_json(srv.url, "/api/blocked")
        ep = next(e for e in served["episodes"] if e["site"] and e["site"]["function"] == "slow_handler")
        line = slow_handler.__code__.co_firstlineno + 1
        assert 0.35 <= ep["duration"] < 5 and ep["running"] == "task slow_handler()"
        assert ep["site"]["lineno"] == line and ep["site"]["filename"] == __file__

        row = next(r for r in page["rows"] if r["seq"] == str(ep["seq"]))
        when, dur, where, running, loop = row["cells"]
        assert f"test_dashboard.py:{line} in slow_handler" in where
        assert dur == f"{ep['duration'] * 1000:.1f} ms"
        assert running == "task slow_handler()" and "service-loop" in loop
        assert any(abs(t - ep["start"]) < 1e-6 and abs(v - ep["duration"]) < 1e-6 for t, v in page["points"])
        assert (
            page["card"].startswith(f"{served['blocks']} block")
            and page["card"].endswith(" in all")
            and page["card_alerting"]
        )
        assert page["threshold_lines"] == 1
        assert served["blocks"] >= before["blocks"] + 1 and page["empty_hidden"]

        # The row opens on the sampled stack (innermost first), and stays open across refreshes.
        browser.execute_script(
            f"document.querySelector('#blocked-episodes tr[data-seq=\"{ep['seq']}\"] summary').click()"
        )
        n = browser.execute_script(_BLOCKED)["refreshes"]
        _wait(lambda: browser.execute_script(_BLOCKED)["refreshes"] >= n + 2, "two more refreshes")
        row = next(r for r in browser.execute_script(_BLOCKED)["rows"] if r["seq"] == str(ep["seq"]))
        assert row["open"] and row["stack"][0].endswith(f"test_dashboard.py:{line} in slow_handler")

        # A second block: newest first, one more point.
        svc.spawn(slow_handler, 1, "slow")
        page = _wait(
            lambda: (lambda p: p if len([r for r in p["rows"] if "slow_handler" in r["cells"][2]]) >= 2 else None)(
                browser.execute_script(_BLOCKED)
            ),
            "the second episode",
        )
        seqs = [int(r["seq"]) for r in page["rows"]]
        assert seqs == sorted(seqs, reverse=True) and len(page["points"]) == len(page["rows"])

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "dashboard-blocked.png"
        browser.execute_script("document.getElementById('blocked').scrollIntoView()")
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        assert _errors(browser) == []
    finally:
        srv.close()
        mon.stop()
        if watch is not None:
            watch.stop()
        svc.stop()


# -- the dashboard on a phone ------------------------------------------------------------

PHONE = (390, 844)  # CSS pixels; a common phone


async def steady_server(ev: asyncio.Event) -> None:
    await ev.wait()  # a long-lived start-up task: one of a fixed few


async def leaky_request(ev: asyncio.Event) -> None:
    await ev.wait()  # never finishes: one more every few samples


_PHONE = """
const vw = document.documentElement.clientWidth;
const inside = e => { const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0 && r.left >= -0.5 && r.right <= vw + 0.5; };
const rows = Array.from(document.querySelectorAll("#groups tbody tr")).map(r => ({
  key: r.dataset.group, trend: r.dataset.trend, growth: parseInt(r.dataset.growth),
  coro: r.querySelector(".coro").textContent, site: (r.querySelector(".site") || {textContent: ""}).textContent,
  growth_text: r.cells[4].textContent, growth_red: getComputedStyle(r.cells[4]).color === getComputedStyle(document.querySelector("header h1")).color,
  visible: [r.querySelector(".coro"), r.querySelector(".site"), r.cells[1], r.cells[4]].filter(Boolean).every(inside)}));
const charts = Array.from(document.querySelectorAll("svg.chart")).map(s => ({
  id: s.id, width: s.clientWidth, viewbox: parseFloat((s.getAttribute("viewBox") || "0 0 0").split(" ")[2]), inside: inside(s),
  font: Math.min(...Array.from(s.querySelectorAll("text.axis")).map(t => parseFloat(getComputedStyle(t).fontSize)))}));
return {
  refreshes: parseInt(document.body.dataset.refreshes || "0"),
  inner: window.innerWidth, client: vw, scroll: document.documentElement.scrollWidth,
  outside: Array.from(document.querySelectorAll("body *")).filter(e => e.getBoundingClientRect().right > vw + 0.5)
                .slice(0, 10).map(e => e.tagName + "#" + e.id + "." + (e.getAttribute("class") || "")),
  cards: Array.from(document.querySelectorAll(".card")).map(inside),
  blocked: document.getElementById("v-blocked").textContent,
  rows: rows, charts: charts,
  alert_rows: Array.from(document.querySelectorAll("#alerts tbody tr")).map(inside),
  episode_rows: Array.from(document.querySelectorAll("#blocked-episodes tbody tr")).map(inside),
};
"""


@pytest.mark.once_per_ci
def test_dashboard_on_a_phone(browser):
    """At 390x844 (CSS pixels, phone emulation) the page does not scroll
    sideways, the cards, charts and each group's coroutine, site, count and
    growth lie inside the viewport, charts are drawn at the full width; a
    group that appeared after the first samples and stayed flat reads
    "steady", one that keeps gaining tasks "growing"; the blocked card says
    how many blocks and how long in words. Saves a screenshot (the one in
    docs/images/ comes from here)."""
    taskleak.install()
    svc = Service()
    ev = svc.call(asyncio.Event)
    mon = taskleak.Monitor(interval=0.1).start()
    srv = taskleak.serve(monitor=mon)
    stop = threading.Event()
    watch = None

    def leak() -> None:
        while not stop.wait(0.2):
            svc.spawn(leaky_request, 1, "request", ev)

    leaker = threading.Thread(target=leak, daemon=True)
    _fresh(browser)
    try:
        # The start-up tasks appear after the monitor's first samples, as in
        # a process whose monitor starts at interpreter start.
        _wait(lambda: len(mon.samples()) >= 3, "three samples")
        svc.spawn(steady_server, 5, "server", ev)
        before = get_json(srv.url, "/api/blocked")
        browser.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": PHONE[0], "height": PHONE[1], "deviceScaleFactor": 1, "mobile": True},
        )
        # A window longer than the test, so that the start-up step stays in
        # it: the group is steady because appearing is not growing, not
        # because the step has scrolled out of the window.
        browser.get(srv.url + "?refresh=0.3&window=1000")
        _wait(lambda: browser.execute_script(_PHONE)["refreshes"] >= 1, "the first refresh")
        assert browser.execute_script("return window.taskleak.trendWindow") == 1000
        blocked = browser.execute_script(_PHONE)["blocked"]
        if not before["watching"] and before["blocks"] == 0:
            assert blocked == "not watched"
        watch = svc.call(lambda: taskleak.watch_blocking(0.1))
        if before["blocks"] == 0:
            _wait(lambda: browser.execute_script(_PHONE)["blocked"] == "no blocked loop", "no blocked loop")
        svc.spawn(slow_handler, 1, "slow")
        leaker.start()

        def settled():
            p = browser.execute_script(_PHONE)
            rows = {r["coro"]: r for r in p["rows"]}
            grow = rows.get("leaky_request()")
            ok = (
                grow
                and grow["trend"] == "growing"
                and "steady_server()" in rows
                and p["episode_rows"]
                and len(mon.samples()) >= 40
            )
            return p if ok else None

        page = _wait(settled, "a growing group, the steady one and the episode on the page")
        served = get_json(srv.url, "/api/samples")["samples"]

        # The start-up group really appeared after the first sample, then stayed at 5: steady.
        first = served[0]["groups"]
        assert not any(g["coro"].endswith("steady_server") for g in first)
        rows = {r["coro"]: r for r in page["rows"]}
        steady, grow = rows["steady_server()"], rows["leaky_request()"]
        assert steady["trend"] == "steady" and steady["growth"] == 0 and steady["growth_text"] == "steady"
        assert not steady["growth_red"]
        assert grow["trend"] == "growing" and grow["growth"] > 0 and grow["growth_text"] == f"+{grow['growth']}"
        assert grow["growth_red"]
        assert "live_service.py:" in steady["site"] and "live_service.py:" in grow["site"]

        # The blocked card in words, with the served totals.
        served_b = get_json(srv.url, "/api/blocked")
        n = served_b["blocks"]
        assert n >= 1
        assert re.fullmatch(rf"{n} blocks?, [0-9.]+ (ms|s|min|h) in all", page["blocked"]), page["blocked"]

        # The viewport is the phone's, and nothing lies past its right edge.
        assert page["inner"] == PHONE[0] and page["client"] == PHONE[0]
        assert page["scroll"] <= PHONE[0], page["outside"]
        assert page["outside"] == []
        assert page["cards"] and all(page["cards"])
        assert page["rows"] and all(r["visible"] for r in page["rows"]), page["rows"]
        assert page["episode_rows"] and all(page["episode_rows"])
        assert all(page["alert_rows"])
        # Charts span the width and are drawn at their own pixel size (labels not shrunk).
        assert len(page["charts"]) == 4
        for c in page["charts"]:
            assert c["inside"] and c["width"] >= PHONE[0] - 80 and abs(c["viewbox"] - c["width"]) <= 1, c
            assert c["font"] >= 10, c

        browser.execute_script("window.scrollTo(0, 0)")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "dashboard-phone.png"
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        browser.execute_script("document.getElementById('groups').scrollIntoView()")
        assert browser.save_screenshot(str(ARTIFACTS / "dashboard-phone-groups.png"))
        assert _errors(browser) == []
    finally:
        stop.set()
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        _fresh(browser)
        srv.close()
        mon.stop()
        if watch is not None:
            watch.stop()
        svc.call(ev.set)
        svc.stop()


@pytest.mark.once_per_ci
def test_dashboard_rules_for_growth_and_blocks(browser):
    """The page's two judgements on plain numbers: which groups grow (a
    rise that stayed over the window, not a group that exists or appeared
    at once), and the blocked card's words."""
    srv = taskleak.serve(interval=0.5)
    _fresh(browser)
    try:
        browser.get(srv.url + "?refresh=5")
        _wait(lambda: browser.execute_script("return !!window.taskleak"), "the page")
        trend = lambda series: browser.execute_script(
            "const t = window.taskleak.groupTrend(arguments[0], 30); return [t.trend, t.growth];", series
        )
        assert browser.execute_script("return window.taskleak.trendWindow") == 30
        assert trend([0, 0, 0] + [5] * 40) == ["steady", 0]  # start-up tasks, after the first samples
        assert trend([5] * 40) == ["steady", 0]
        assert trend([1] * 10 + [5] * 40) == ["steady", 0]  # a step long ago is out of the window
        assert trend([0, 0] + [60] * 10) == ["steady", 0]  # connections opened at once
        assert trend([None, None, 5, 5, 5, 5]) == ["steady", 0]  # unknown (lumped in "other") is skipped
        assert trend([5, 7, 4, 6, 5, 8, 4, 6, 5, 7] * 4)[0] == "steady"  # up and down, no lasting rise
        assert trend([5] * 10 + [50] + [5] * 10)[0] == "steady"  # one spike
        assert trend(list(range(40))) == ["growing", 30]  # a leak: +1 a sample
        assert trend([10] * 15 + [11] * 16) == ["growing", 1]  # a slow leak: +1 in the window
        assert trend([0, 0, 0, 1, 2, 3]) == ["growing", 2]  # a leak from start
        assert trend(list(range(40, 0, -1)))[0] == "shrinking"
        words = lambda d: browser.execute_script("return window.taskleak.blockedWords(arguments[0])", d)
        assert words({"watching": False, "blocks": 0, "blocked_seconds": 0}) == "not watched"
        assert words({"watching": True, "blocks": 0, "blocked_seconds": 0}) == "no blocked loop"
        assert words({"watching": True, "blocks": 3, "blocked_seconds": 1.5}) == "3 blocks, 1.5 s in all"
        assert words({"watching": False, "blocks": 1, "blocked_seconds": 0.4}) == "1 block, 400.0 ms in all"
        assert _errors(browser) == []
    finally:
        _fresh(browser)
        srv.close()


@pytest.mark.once_per_ci
def test_dashboard_banner_while_the_loop_holds_the_gil(browser, tmp_path, monkeypatch):
    """A page already open when the loop gets stuck in a C call that holds
    the GIL: the native /api/blocked still answers, and the page shows a
    red banner naming the stuck line while the other answers fail; the
    banner goes once the loop is back."""
    from test_native_answers import Child

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    child = Child(tmp_path)
    try:
        browser.get(child.url + "?refresh=0.3")
        _wait(lambda: browser.execute_script("return document.body.dataset.refreshes"), "the first refresh")
        assert browser.execute_script("return document.getElementById('blocked-now').hidden") is True
        child.block("gil", 5.0)
        line = child.line("# STUCK HERE")
        text = _banner_naming(browser, "stuck_in_c")
        assert re.match(rf"BLOCKED NOW \d+\.\d s at stuck_service\.py:{line} in stuck_in_c  - loop MainThread", text)
        _wait(
            lambda: (
                "the process is stuck" in browser.execute_script("return document.getElementById('status').textContent")
            ),
            "the status",
            timeout=4.0,
        )
        child.wait_done()
        _wait(
            lambda: browser.execute_script("return document.getElementById('blocked-now').hidden"), "the banner to go"
        )
    finally:
        child.stop()


def test_dashboard_opened_while_the_loop_holds_the_gil(browser, tmp_path, monkeypatch):
    """A page opened for the first time while the loop is stuck in a C call
    that holds the GIL: the page and its assets come from the native thread,
    so it loads, and shows the banner naming the stuck line (from the native
    /api/blocked) while the answers that need Python fail."""
    from test_native_answers import Child, wait_blocked

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    child = Child(tmp_path)
    try:
        _fresh(browser)
        child.block("gil", 8.0)
        wait_blocked(child.url)
        t0 = time.monotonic()
        browser.get(child.url + "?refresh=0.3")  # returns once the page and its script and style loaded
        line = child.line("# STUCK HERE")
        text = _banner_naming(browser, "stuck_in_c")
        assert re.match(rf"BLOCKED NOW \d+\.\d s at stuck_service\.py:{line} in stuck_in_c  - loop MainThread", text)
        # The style sheet applied (served natively too): the banner is red.
        bg = browser.execute_script("return getComputedStyle(document.getElementById('blocked-now')).backgroundColor")
        assert bg == "rgb(179, 38, 30)", bg
        assert browser.execute_script("return document.getElementById('proc').textContent").startswith(
            f"pid {child.pid} "
        )  # /api/info, native
        _wait(
            lambda: (
                "the process is stuck" in browser.execute_script("return document.getElementById('status').textContent")
            ),
            "the status",
            timeout=4.0,
        )
        assert time.monotonic() - t0 < 6.0  # all while still stuck
        child.wait_done()
        _wait(
            lambda: browser.execute_script("return document.getElementById('blocked-now').hidden"), "the banner to go"
        )
    finally:
        _fresh(browser)
        child.stop()

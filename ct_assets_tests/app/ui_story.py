"""The loop's story in the real Dagster UI, read in headless Chromium (Debian's package, driven by
Playwright): the deployment names the model actually serving, the gate's latest verdict is shown
with its reasons, and the monitoring dashboard's plot renders. The expected facts come from
`ct status --json` on the same home, so the UI and the CLI are checked to agree."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from ct_assets.lib.core import settings

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 30_000


def ct_status(env: dict[str, str]) -> dict[str, Any]:
    answer = subprocess.run(
        [str(Path(sys.executable).parent / "ct"), "status", "--json"],
        env=env,
        cwd=settings.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(answer.stdout)


def _skip_the_community_dialog(page: Page) -> None:
    with contextlib.suppress(PlaywrightTimeout):
        page.get_by_role("button", name="Skip").click(timeout=10_000)


def _markdown(page: Page, entry: str) -> Any:
    """Open the Markdown metadata entry `entry` of the latest materialization; returns its dialog."""
    row = page.get_by_role("row").filter(has=page.get_by_text(entry, exact=True)).first
    row.get_by_text("Show Markdown").click()
    return page.get_by_role("dialog").last


def walk_the_story(url: str, env: dict[str, str], screenshots: Path) -> dict[str, Any]:
    """Read the story in the UI; returns the `ct status` it checked against."""
    status = ct_status(env)
    assert status["health"]["webserver"] and status["health"]["daemon"], status["health"]
    serving = [s["version"] for s in status["serving"].values() if s["active"]]
    assert serving, f"nothing serves: {status['serving']}"
    gate = status["last_gate"]
    assert gate, "no gate verdict yet"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1400})
        page.set_default_timeout(TIMEOUT_MS)
        expect.set_options(timeout=TIMEOUT_MS)
        try:
            # the deployment: the version that serves all traffic now
            page.goto(f"{url}/assets/flights_delay/deployment")
            _skip_the_community_dialog(page)
            expect(page.get_by_text("Latest materialization")).to_be_visible()
            serving_row = page.get_by_role("row").filter(has=page.get_by_text("serving", exact=True))
            expect(serving_row.first).to_contain_text(f":{serving[0]}")
            page.screenshot(path=screenshots / "deployment.png")

            # the gate: the latest verdict with its reasons (the check's description)
            page.goto(f"{url}/assets/flights_delay/evaluation?view=checks")
            expect(page.get_by_text("gate", exact=True).first).to_be_visible()
            words = gate["reasons"][0] if gate["reasons"] else "passed: "
            expect(page.get_by_text(re.compile(re.escape(words[:40]))).first).to_be_visible()
            page.screenshot(path=screenshots / "gate.png")

            # the dashboard: refreshed by the loop, its plot decodes
            page.goto(f"{url}/assets/flights_delay/monitoring_dashboard")
            expect(page.get_by_text("Latest materialization")).to_be_visible()
            dialog = _markdown(page, "segments")
            image = dialog.get_by_role("img", name="segment AUC")
            expect(image).to_be_visible()
            assert image.evaluate("img => img.complete && img.naturalWidth > 100"), "the plot did not render"
            page.screenshot(path=screenshots / "dashboard.png")
        except Exception:
            page.screenshot(path=screenshots / "failure.png")
            raise
        finally:
            browser.close()
    return status


if __name__ == "__main__":  # against a running demo: python -m ct_assets_tests.app.ui_story URL
    out = Path(os.environ.get("CT_SCREENSHOTS", "/tmp"))
    print(walk_the_story(sys.argv[1], dict(os.environ), out))

"""The web pages in a real browser (headless Chromium driven by Playwright).

Against a real ``loreg serve`` (embedded mode): a small catalog is set up through the
CLI and the API (a base model, two adapters with READMEs and tags, one adapter in a
private namespace, a combine result with two parents, a read-only token, a dataset),
then a visitor signs in through the form, searches with a filter, opens an adapter
(card figures, spectrum chart, README table), follows its lineage, watches a job
update live without a reload and cancels a running train job from its page.

Every page visited is saved as a full-page screenshot under the artifacts folder
(``$LOREG_TEST_ARTIFACTS/web/`` when set, else a pytest temporary folder), and no
page may log a console error or raise (a CSP violation is logged as "Refused to ...").
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from safetensors import safe_open

from tests.e2e.conftest import Served, run_cli
from tests.support.publish import publish
from tests.support.tiny import save_adapter, save_base_model
from tests.support.waiting import wait_until

CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)

from playwright.sync_api import (  # noqa: E402  (after the skip: CI installs both)
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    expect,
    sync_playwright,
)

BASE = "tiny-llama"
TABLE_README = """# Clinical notes

Answers short clinical questions.

| metric | value |
|--------|-------|
| f1     | 0.91  |
| recall | 0.88  |
"""
RECORDS = [  # short: the tiny model has 64 positions
    {"system": "Be brief.", "conversation": [{"human": f"fever {i}?", "assistant": "rest."}]}
    for i in range(12)
]
TERMINAL = ("succeeded", "failed", "cancelled")


@dataclass
class Catalog:
    """What the set-up published: refs, ids and tokens the tests look for."""

    served: Served
    api: httpx.Client
    admin_name: str
    reader_token: str
    lora_parameters: int
    lora_modules: int
    lora_rank: int
    combined_ref: str


@dataclass
class Visit:
    """A browser page of one context, with the console errors it collected."""

    page: Page
    shots: Path
    errors: list[str] = field(default_factory=list)

    def shot(self, name: str) -> Path:
        """Save a full-page screenshot ``<name>.png`` of what the page shows now."""
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


def adapter_files(folder: Path, readme: str) -> dict[str, bytes]:
    """The files of a saved adapter folder, plus a README.md."""
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    files.pop("README.md", None)  # PEFT's own boilerplate card
    return {**files, "README.md": readme.encode()}


def lora_figures(folder: Path) -> tuple[int, int]:
    """(LoRA parameter count, module count) of a saved adapter, from its tensors."""
    with safe_open(str(folder / "adapter_model.safetensors"), framework="pt") as handle:
        keys = list(handle.keys())
        count = sum(math.prod(handle.get_slice(k).get_shape()) for k in keys)
    return count, sum(1 for k in keys if k.endswith("lora_A.weight"))


def job_view(api: httpx.Client, job_id: str) -> dict[str, Any]:
    """``GET /v1/jobs/{id}``."""
    return api.get(f"/v1/jobs/{job_id}").raise_for_status().json()


def wait_job(api: httpx.Client, job_id: str, timeout: float = 120) -> dict[str, Any]:
    """Poll the API until the job is terminal; returns its view."""
    return wait_until(
        lambda: (view := job_view(api, job_id))["status"] in TERMINAL and view,
        timeout=timeout,
        interval=0.2,
        message=lambda: f"job not finished: {job_view(api, job_id)}",
    )


def submit(api: httpx.Client, body: dict[str, Any]) -> str:
    """Submit a job (``POST /v1/jobs``); returns its id."""
    answer = api.post("/v1/jobs", json=body)
    assert answer.status_code == 202, answer.text
    return answer.json()["id"]


def combine_body(output: str) -> dict[str, Any]:
    """A linear combine of the two public adapters."""
    return {
        "type": "combine",
        "inputs": [{"ref": "default/notes-v1", "weight": 0.6}, {"ref": "default/style-v1"}],
        "params": {"method": "linear"},
        "output": output,
    }


@pytest.fixture(scope="module")
def catalog(served: Served, tmp_path_factory) -> Iterator[Catalog]:
    """Publish the catalog the pages show, through the CLI and the API."""
    work = tmp_path_factory.mktemp("web-catalog")
    cache = work / "cache"
    api = httpx.Client(
        base_url=served.url, headers={"Authorization": f"Bearer {served.token}"}, timeout=60
    )
    run_cli(served, cache, "base", "push", str(save_base_model(work / "base")), "--name", BASE)
    data = work / "notes.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    run_cli(served, cache, "dataset", "push", str(data), "--name", "chats")

    notes = save_adapter(work / "notes", seed=1, r=4)
    style = save_adapter(work / "style", seed=5, r=4)
    for name, folder, readme, tags, description in [
        ("notes", notes, TABLE_README, ["medical", "qa"], "Answers clinical questions"),
        ("style", style, "# Style\n\nA terse *house style*.\n", ["style", "qa"], "House style"),
    ]:
        r, _ = publish(
            api,
            name,
            adapter_files(folder, readme),
            base_model=BASE,
            description=description,
            metadata={"tags": tags},
        )
        assert r.status_code in (200, 201), r.text
    assert api.post("/v1/namespaces", json={"name": "vault", "private": True}).is_success
    r, _ = publish(api, "secret", adapter_files(notes, "# hidden\n"), namespace="vault")
    assert r.status_code in (200, 201), r.text

    combined = wait_job(api, submit(api, combine_body("notes-style")))
    assert combined["status"] == "succeeded", combined
    combined_ref = combined["result"]["ref"]
    lineage = api.get(f"/v1/resolve/{combined_ref}").raise_for_status().json()["lineage"]
    assert {e["parent"]["ref"] for e in lineage if e["relation"] == "combined_from"} == {
        "default/notes-v1",
        "default/style-v1",
    }

    made = api.post(
        "/v1/tokens",
        json={"name": "reader", "grants": [{"namespace": "default", "scope": "read"}]},
    )
    assert made.status_code == 201, made.text
    whoami = api.get("/v1/whoami").raise_for_status().json()
    count, modules = lora_figures(notes)
    yield Catalog(
        served=served,
        api=api,
        admin_name=whoami["token_name"],
        reader_token=made.json()["token"],
        lora_parameters=count,
        lora_modules=modules,
        lora_rank=4,
        combined_ref=combined_ref,
    )
    api.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    """Where the screenshots go: ``$LOREG_TEST_ARTIFACTS/web/`` or a temporary folder."""
    root = os.environ.get("LOREG_TEST_ARTIFACTS")
    if not root:
        return tmp_path_factory.mktemp("web-screenshots")
    folder = Path(root) / "web"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium (Debian's) for the module."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def visits(browser: Browser, shots: Path) -> Iterator[Any]:
    """Open pages in fresh browser contexts; at the end, none may have logged an error."""
    opened: list[tuple[BrowserContext, Visit]] = []

    def visit() -> Visit:
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        context.set_default_timeout(15_000)
        seen = Visit(page=context.new_page(), shots=shots)

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                seen.errors.append(f"console: {message.text} ({message.location})")

        seen.page.on("console", on_console)
        seen.page.on("pageerror", lambda exc: seen.errors.append(f"pageerror: {exc}"))
        opened.append((context, seen))
        return seen

    yield visit
    errors = [e for _, v in opened for e in v.errors]
    for context, _ in opened:
        context.close()
    assert not errors, "the pages logged errors:\n" + "\n".join(errors)


def sign_in(visit: Visit, url: str, token: str, *, shot: str | None = None) -> None:
    """Sign in through the form (/sign-in: paste the token, submit)."""
    page = visit.page
    page.goto(url + "/sign-in")
    expect(page.locator("h1")).to_have_text("Sign in")
    if shot:
        visit.shot(shot)
    page.fill("#token", token)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()


def listed(page: Page) -> list[str]:
    """The adapters a search page lists (``namespace/name``), in order."""
    return page.locator("a.result-name").all_inner_texts()


def test_sign_in_shows_the_token_and_its_private_namespaces(catalog, visits):
    url = catalog.served.url
    visit = visits()
    page = visit.page
    page.goto(url + "/")
    expect(page.locator("h1")).to_be_visible()
    expect(page.get_by_role("link", name="Sign in")).to_be_visible()
    expect(page.locator("a.result-name").first).to_be_visible()
    assert set(listed(page)) == {"default/notes", "default/style", "default/notes-style"}
    expect(page.locator(".side")).not_to_contain_text("vault")
    visit.shot("01-home-anonymous")

    sign_in(visit, url, catalog.served.token, shot="02-sign-in")
    expect(page.locator("header.top .token-name")).to_have_text(catalog.admin_name)
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    assert page.url == url + "/"
    assert set(listed(page)) == {
        "default/notes",
        "default/style",
        "default/notes-style",
        "vault/secret",
    }
    expect(page.locator(".side")).to_contain_text("vault")
    visit.shot("03-home-signed-in")


def test_a_wrong_token_is_refused_on_the_form(catalog, visits):
    visit = visits()
    page = visit.page
    page.goto(catalog.served.url + "/sign-in")
    page.fill("#token", "lrg_not-a-real-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".banner.error")).to_be_visible()
    expect(page.get_by_role("link", name="Sign in")).to_be_visible()
    # the form's 401 is expected; Chromium logs the failed document load, nothing else
    visit.errors[:] = [e for e in visit.errors if "status of 401" not in e]


def test_search_with_a_filter_lists_only_the_matches(catalog, visits):
    url = catalog.served.url
    visit = visits()
    page = visit.page
    page.goto(url + "/")
    page.fill("#q", "clinical")
    page.locator("details.filters summary").click()
    page.get_by_label("Tags").fill("medical")
    with page.expect_navigation():
        page.get_by_role("button", name="Search").click()
    query = dict(re.findall(r"[?&]([^=&]+)=([^&]*)", page.url))
    assert query["q"] == "clinical" and query["tags"] == "medical", page.url
    expect(page.locator("a.result-name")).to_have_count(1)
    assert listed(page) == ["default/notes"]
    expect(page.locator("#q")).to_have_value("clinical")
    expect(page.get_by_label("Tags")).to_have_value("medical")
    expect(page.locator(".result")).to_contain_text("Answers clinical questions")
    visit.shot("04-search-results")

    page.get_by_label("Tags").fill("nothing-has-this")
    page.get_by_role("button", name="Search").click()
    expect(page.locator(".empty")).to_have_text("Nothing matches these filters.")
    expect(page.locator("a.result-name")).to_have_count(0)


def test_adapter_page_shows_its_card_spectrum_and_readme(catalog, visits):
    url = catalog.served.url
    visit = visits()
    page = visit.page
    page.goto(url + "/?tags=medical")
    page.get_by_role("link", name="default/notes", exact=True).click()
    page.wait_for_url(url + "/adapters/default/notes")
    expect(page.locator(".page-head h1")).to_have_text("notes")

    figures = page.locator("dl.figures")

    def card_ready() -> bool:  # the card job runs in the embedded executor after publish
        if figures.count():
            return True
        page.reload()
        return False

    wait_until(card_ready, timeout=60, interval=0.5, message="the card never became ready")
    expect(figures.locator("dt", has_text="LoRA parameters")).to_be_visible()
    shown = figures.locator("dt:has-text('LoRA parameters') + dd").inner_text()
    assert int(shown.replace(",", "")) == catalog.lora_parameters
    modules = figures.locator("dt:has-text('Modules') + dd")
    expect(modules).to_have_text(str(catalog.lora_modules))
    expect(figures.locator("dt:has-text('Ranks') + dd")).to_have_text(str(catalog.lora_rank))

    bars = page.locator("svg .spectrum-bar")
    expect(bars).to_have_count(catalog.lora_modules * catalog.lora_rank)
    assert page.locator("svg .spectrum-row").count() == catalog.lora_modules
    heights = [float(bars.nth(i).get_attribute("height") or 0) for i in range(bars.count())]
    assert max(heights) > 0 and all(h >= 0 for h in heights)
    assert bars.first.bounding_box()["height"] > 0  # drawn, not collapsed by CSS

    readme = page.locator("article.readme")
    expect(readme.locator("h2")).to_have_text("Clinical notes")
    table = readme.locator("table")
    expect(table.locator("th")).to_have_text(["metric", "value"])
    expect(table.locator("tbody tr")).to_have_count(2)
    expect(table.locator("tbody tr").first.locator("td")).to_have_text(["f1", "0.91"])
    visit.shot("05-adapter-page")


def test_lineage_graph_links_to_the_parents(catalog, visits):
    url = catalog.served.url
    visit = visits()
    page = visit.page
    namespace, rest = catalog.combined_ref.split("/")
    name, number = rest.rsplit("-v", 1)
    page.goto(f"{url}/adapters/{namespace}/{name}/versions/{number}")
    expect(page.locator("h2#version-title")).to_contain_text(f"v{number}")
    page.get_by_role("link", name="ancestry and dependents").click()
    page.wait_for_url(f"{url}/adapters/{namespace}/{name}/versions/{number}/lineage")
    expect(page.locator("h1")).to_have_text("Lineage")

    graph = page.locator("figure.lineage svg")
    expect(graph).to_be_visible()
    parent_href = "/adapters/default/notes/versions/1"
    expect(graph.locator(f'a[href="{parent_href}"]')).to_have_count(1)
    expect(graph.locator('a[href="/adapters/default/style/versions/1"]')).to_have_count(1)
    rows = page.locator("table tbody tr", has_text="combined_from")
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="default/notes-v1")).to_contain_text("weight=0.6")
    visit.shot("06-lineage")

    graph.locator(f'a[href="{parent_href}"]').click()
    page.wait_for_url(url + parent_href)
    expect(page.locator(".page-head h1")).to_have_text("notes")
    expect(page.locator("h2#version-title")).to_contain_text("v1")
    visit.shot("07-lineage-parent")

    page.go_back()
    page.wait_for_url(re.compile(r"/lineage$"))
    rows.filter(has_text="default/style-v1").get_by_role("link", name="default/style-v1").click()
    page.wait_for_url(url + "/adapters/default/style/versions/1")
    expect(page.locator(".page-head h1")).to_have_text("style")


def test_job_pages_update_live_and_a_running_job_is_cancelled(catalog, visits):
    url, api = catalog.served.url, catalog.api
    # a long train job occupies the embedded executor (one job at a time) ...
    params = {"base_model": BASE, "dataset": "chats", "preset": "small", "steps": 100_000}
    train_id = submit(
        api, {"type": "train", "params": {**params, "max_length": 64}, "output": "long"}
    )

    def training() -> bool:
        view = job_view(api, train_id)
        assert view["status"] in ("queued", "running"), view
        return view["status"] == "running" and (view["progress"] or 0) > 0

    wait_until(training, timeout=90, interval=0.3, message=lambda: job_view(api, train_id))
    # ... so a combine submitted now waits queued behind it
    combine_id = submit(api, combine_body("notes-style-2"))

    admin = visits()
    sign_in(admin, url, catalog.served.token)
    watcher = admin.page
    watcher.goto(f"{url}/jobs/{combine_id}")
    status = watcher.locator('[data-field="status"]')
    expect(status).to_have_text("queued")
    expect(watcher.locator('[data-field="started_at"]')).to_have_text("–")
    expect(watcher.get_by_role("button", name="Cancel job")).to_be_visible()
    watcher.evaluate("window.__marker = 1")
    admin.shot("08-job-queued")

    reader = visits()
    sign_in(reader, url, catalog.reader_token)
    expect(reader.page.locator("header.top .token-name")).to_have_text("reader")
    reader.page.goto(f"{url}/jobs/{train_id}")
    expect(reader.page.locator('[data-field="status"]')).to_have_text("running")
    expect(reader.page.get_by_role("button", name="Cancel job")).to_have_count(0)
    reader.page.goto(f"{url}/jobs/{combine_id}")
    expect(reader.page.locator('[data-field="status"]')).to_have_text("queued")
    expect(reader.page.get_by_role("button", name="Cancel job")).to_have_count(0)
    reader.shot("09-job-as-reader")

    # the admin cancels the train job from its page, in a second tab
    canceller = admin.page.context.new_page()
    canceller.on("pageerror", lambda exc: admin.errors.append(f"pageerror: {exc}"))
    canceller.on(
        "console", lambda m: m.type == "error" and admin.errors.append(f"console: {m.text}")
    )
    canceller.goto(f"{url}/jobs/{train_id}")
    expect(canceller.locator('[data-field="status"]')).to_have_text("running")
    expect(canceller.locator("progress[data-field=progress]")).to_be_visible()
    Visit(page=canceller, shots=admin.shots).shot("10-job-running")
    with canceller.expect_navigation():
        canceller.get_by_role("button", name="Cancel job").click()
    assert canceller.url == f"{url}/jobs/{train_id}"
    expect(canceller.locator('[data-field="status"]')).to_contain_text(
        re.compile("cancel requested|cancelled")
    )
    expect(canceller.locator('[data-field="status"] .status')).to_have_text(
        "cancelled", timeout=60_000
    )
    expect(canceller.get_by_role("button", name="Cancel job")).to_have_count(0)
    assert job_view(api, train_id)["status"] == "cancelled"
    Visit(page=canceller, shots=admin.shots).shot("11-job-cancelled")

    # the combine then runs; its page, never reloaded, follows it to the end
    expect(status).to_have_text("succeeded", timeout=90_000)
    result = watcher.locator('[data-field="result"] a')
    ref = job_view(api, combine_id)["result"]["ref"]
    expect(result).to_have_text(ref)
    expect(result).to_have_attribute("href", "/adapters/default/notes-style-2/versions/1")
    expect(watcher.get_by_role("button", name="Cancel job")).to_have_count(0)
    assert watcher.evaluate("window.__marker") == 1  # no reload, no navigation
    assert watcher.url == f"{url}/jobs/{combine_id}"
    # every figure that changed while it ran is updated, not left as first rendered
    expect(watcher.locator('[data-field="attempts"]')).to_have_text("1")
    for moment in ("started_at", "finished_at"):
        expect(watcher.locator(f'[data-field="{moment}"]')).to_have_text(re.compile(r" UTC$"))
    admin.shot("12-job-succeeded-live")

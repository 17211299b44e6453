"""The web pages over HTTP on both backends: what each page shows, to whom, and safely.

A small catalog is published through the API (a public adapter with a hostile
README and two versions, a second public adapter, one in a private namespace, a
child version with lineage); card jobs are recorded and run here with ``run_job``,
so each test decides what is computed. Pages are read as anonymous, as tokens
signed in through the sign-in form (the cookie), and as a bearer header.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from registry.web import security
from registry.web.pages import common
from tests.support.dispatch import RecordingDispatcher
from tests.support.html import ParsedPage, parse_page
from tests.support.publish import publish
from workers.runner import run_job

BASE = "meta-llama/Llama-3.2-1B"
HOSTILE_README = """# Medical notes

<script>alert('readme')</script>

[click me](javascript:alert(1)) and [docs](https://example.org/docs)

<img src="x" onerror="alert(2)"> <a href="JaVaScRiPt:alert(3)">case</a>
<a href=" java&#x09;script:alert(4)">entity</a> <b onclick="alert(5)">bold</b>

| metric | value |
|--------|-------|
| f1     | 0.91  |
"""


def readme_variant(files: dict[str, bytes], readme: str, **config: Any) -> dict[str, bytes]:
    cfg = json.loads(files["adapter_config.json"])
    cfg.update(config)
    return {
        **files,
        "adapter_config.json": json.dumps(cfg).encode(),
        "README.md": readme.encode(),
    }


def push(api: httpx.Client, name: str, files: dict[str, bytes], **extra: Any) -> dict[str, Any]:
    r, _ = publish(api, name, files, **extra)
    assert r.status_code in (200, 201), r.text
    return r.json()


def browser(url: str) -> httpx.Client:
    """A client that keeps cookies and asks for HTML, like a browser."""
    return httpx.Client(base_url=url, headers={"Accept": "text/html"}, timeout=30)


def csrf_of(page: ParsedPage) -> str:
    (field,) = {e.attrs["value"] for e in page.find("input", name=security.CSRF_FIELD)}
    assert field
    return field


def sign_in(client: httpx.Client, token: str) -> httpx.Response:
    form = parse_page(client.get("/sign-in").text)
    return client.post("/sign-in", data={"token": token, "csrf": csrf_of(form), "next": "/"})


@pytest.fixture
def site(registry_server, admin_api, adapter_files, other_adapter_files) -> dict[str, Any]:
    sent = RecordingDispatcher()
    registry_server.ctx._dispatcher = sent
    assert admin_api.post("/v1/namespaces", json={"name": "vault", "private": True}).is_success
    push(
        admin_api,
        "med",
        readme_variant(adapter_files, HOSTILE_README, task_type="CAUSAL_LM"),
        base_model=BASE,
        description="Answers <clinical> questions",
        metadata={"tags": ["medical", "qa"]},
    )
    push(
        admin_api,
        "med",
        readme_variant(other_adapter_files, "# v2\n", task_type="CAUSAL_LM"),
        base_model=BASE,
    )
    push(admin_api, "legal", adapter_files, base_model=BASE, metadata={"tags": ["legal"]})
    push(admin_api, "secret", adapter_files, namespace="vault", base_model=BASE)
    push(
        admin_api,
        "med-child",
        adapter_files,
        base_model=BASE,
        parents=[{"ref": "default/med-v1", "relation": "continued_from"}],
    )
    assert admin_api.put("/v1/adapters/default/med/aliases/prod", json={"version": 1}).is_success
    r = admin_api.post("/v1/adapters/default/med/versions/2/yank", json={"reason": "bad eval"})
    assert r.status_code == 200, r.text
    for job_id, _ in list(sent.sent):
        assert run_job(registry_server.ctx, job_id) == "succeeded"

    def token(name: str, grants: list[dict[str, str]]) -> str:
        r = admin_api.post("/v1/tokens", json={"name": name, "grants": grants})
        assert r.status_code == 201, r.text
        return r.json()["token"]

    return {
        "sent": sent,
        "reader": token("reader", [{"namespace": "*", "scope": "read"}]),
        "outsider": token("outsider", [{"namespace": "default", "scope": "write"}]),
    }


PAGES = [
    "/",
    "/?q=medical&tags=qa",
    "/datasets",
    "/adapters/default/med",
    "/adapters/default/med/versions/2",
    "/adapters/default/med-child/versions/1/lineage",
    "/jobs",
    "/base-models",
    "/sign-in",
]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_has_a_strict_csp_and_no_inline_code(site, registry_server, path):
    with browser(registry_server.url) as client:
        r = client.get(path)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["content-security-policy"] == security.CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert "unsafe-inline" not in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"
    page = parse_page(r.text)
    scripts = page.find("script")
    assert scripts and all((s.attrs.get("src") or "").startswith("/static/") for s in scripts)
    assert not page.find("style")
    for element in page.elements:
        assert "style" not in element.attrs, element
        assert not any(name.startswith("on") for name in element.attrs), element


def test_the_static_files_are_served_from_the_package(registry_server):
    with browser(registry_server.url) as client:
        css, js = client.get("/static/loreg.css"), client.get("/static/loreg.js")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert "prefers-color-scheme: dark" in css.text and ".spectrum-bar" in css.text
    assert js.status_code == 200 and "/live" in js.text
    assert js.headers["x-content-type-options"] == "nosniff"


def test_search_page_filters_from_the_url(site, registry_server):
    with browser(registry_server.url) as client:
        listed = parse_page(client.get("/").text)
        tagged = parse_page(client.get("/", params={"tags": "medical"}).text)
        text = parse_page(client.get("/", params={"q": "clinical"}).text)
        bad = client.get("/", params={"rank_min": "lots"})
        ranks = client.get("/", params={"rank_min": "9", "rank_max": "1"})

    def shown(page: ParsedPage) -> set[str]:
        return {e.attrs["href"] for e in page.find("a", class_="result-name")}

    assert shown(listed) == {
        "/adapters/default/med",
        "/adapters/default/legal",
        "/adapters/default/med-child",
    }
    assert shown(tagged) == {"/adapters/default/med"}
    assert shown(text) == {"/adapters/default/med"}
    assert "Answers <clinical> questions" in text.text  # escaped text, shown as written
    # the form shows the query it ran (so the URL can be shared)
    assert tagged.find("input", name="tags", value="medical")
    assert bad.status_code == 422 and "rank_min must be a whole number" in bad.text
    assert ranks.status_code == 422 and "rank_min (9) is greater than rank_max (1)" in ranks.text


def test_lists_page_by_cursor_without_skipping(site, registry_server, monkeypatch):
    monkeypatch.setattr(common, "PAGE_ROWS", 1)
    seen: list[str] = []
    with browser(registry_server.url) as client:
        url = "/?sort=name"
        for _ in range(5):
            page = parse_page(client.get(url).text)
            seen += [e.attrs["href"] for e in page.find("a", class_="result-name")]
            nxt = page.find("a", rel="next")
            if not nxt:
                break
            url = "/" + nxt[0].attrs["href"]
    assert seen == [
        "/adapters/default/legal",
        "/adapters/default/med",
        "/adapters/default/med-child",
    ]


def test_adapter_page_shows_versions_marks_card_spectrum_and_snippets(site, registry_server):
    with browser(registry_server.url) as client:
        latest = client.get("/adapters/default/med")
        v2 = client.get("/adapters/default/med/versions/2")
    assert latest.status_code == 200 and v2.status_code == 200
    page = parse_page(latest.text)
    # v2 is yanked, so the page opens on v1 (latest skips yanked versions)
    assert re.search(r"v1 @prod", page.text)
    assert "yanked" in parse_page(v2.text).text and "bad eval" in v2.text
    links = {e.attrs.get("href") for e in page.find("a")}
    assert {"/adapters/default/med/versions/1", "/adapters/default/med/versions/2"} <= links
    assert "/adapters/default/med/versions/1/lineage" in links
    assert {"/?tags=medical", "/?tags=qa"} <= links  # v1's tags, each a search
    # the computed card: figures and the spectrum chart, drawn on the server
    assert "LoRA parameters" in page.text and "Per-module figures" in page.text
    svg = re.search(r"<svg[^>]*>.*?</svg>", latest.text, re.S)
    assert svg is not None and 'class="spectrum-bar"' in svg.group(0)
    # copy-paste snippets name this version for each tool
    code = " ".join(page.text.split())
    assert "loreg pull default/med-v1" in code
    assert 'registry.load(model, "default/med-v1")' in code
    assert "hf download default/med --revision v1" in code
    assert f"HF_ENDPOINT={registry_server.url}/hf" in code
    assert 'PeftModel.from_pretrained(model, "default/med", revision="v1")' in code


def test_a_hostile_readme_renders_inert(site, registry_server):
    with browser(registry_server.url) as client:
        r = client.get("/adapters/default/med/versions/1")
    assert r.status_code == 200
    page = parse_page(r.text)
    readme = r.text[r.text.index('<article class="readme">') :]
    readme = readme[: readme.index("</article>")]
    assert "<script" not in readme.lower() and "onerror" not in readme.lower()
    assert "onclick" not in readme.lower()
    for element in page.elements:
        for name in ("href", "src"):
            value = (element.attrs.get(name) or "").strip().lower()
            assert not value.startswith(("javascript:", "data:", "vbscript:")), element
        assert not any(name.startswith("on") for name in element.attrs), element
    assert [s.attrs.get("src", "").split("?")[0] for s in page.find("script")] == [
        "/static/loreg.js"
    ]
    readme_page = parse_page(readme)
    assert readme_page.find("table") and readme_page.find("h2")  # "# Medical notes"
    assert len(page.find("h1")) == 1  # the page's title only
    assert any(
        e.attrs.get("href") == "https://example.org/docs" and "noopener" in (e.attrs["rel"] or "")
        for e in readme_page.find("a")
    )


def test_lineage_page_draws_the_graph_and_links_each_parent(site, registry_server):
    with browser(registry_server.url) as client:
        r = client.get("/adapters/default/med-child/versions/1/lineage")
        parent = client.get("/adapters/default/med/versions/1/lineage")
    assert r.status_code == 200
    page = parse_page(r.text)
    hrefs = {e.attrs.get("href") for e in page.find("a")}
    assert "/adapters/default/med/versions/1" in hrefs  # the parent, in the SVG and the table
    assert "continued_from" in page.text
    assert '<g class="node"' in r.text and "<?xml" not in r.text
    # from the parent's page the child is a dependent
    assert "/adapters/default/med-child/versions/1" in parent.text


def test_a_private_namespace_is_404_to_anonymous_and_to_other_tokens(site, registry_server):
    private = [
        "/adapters/vault/secret",
        "/adapters/vault/secret/versions/1",
        "/adapters/vault/secret/versions/1/lineage",
    ]
    with browser(registry_server.url) as anonymous, browser(registry_server.url) as outsider:
        assert sign_in(outsider, site["outsider"]).status_code == 303
        for client in (anonymous, outsider):
            for path in private:
                r = client.get(path)
                assert r.status_code == 404, (path, r.text)
                assert "not found" in r.text and "secret-v1" not in r.text
                assert r.headers["content-type"].startswith("text/html")
            home = client.get("/", params={"namespace": "vault"})
            assert home.status_code == 422 or "/adapters/vault/secret" not in home.text
            assert "/adapters/vault/secret" not in client.get("/").text
            assert ">vault<" not in client.get("/").text  # not even in the namespace list
    with browser(registry_server.url) as reader:
        assert sign_in(reader, site["reader"]).status_code == 303
        assert all(reader.get(path).status_code == 200 for path in private)
        assert "/adapters/vault/secret" in reader.get("/").text
    # a bearer header works as well as the cookie
    bearer = {"Authorization": f"Bearer {site['reader']}"}
    assert httpx.get(registry_server.url + private[0], headers=bearer).status_code == 200


def test_sign_in_keeps_the_token_in_an_httponly_cookie_and_sign_out_clears_it(
    site, registry_server
):
    with browser(registry_server.url) as client:
        wrong = sign_in(client, "lrg_" + "x" * 43)
        assert wrong.status_code == 401 and "invalid or revoked token" in wrong.text
        assert security.TOKEN_COOKIE not in client.cookies
        r = sign_in(client, site["reader"])
        assert r.status_code == 303 and r.headers["location"] == "/"
        cookie = next(
            v for k, v in r.headers.multi_items() if k == "set-cookie" and "loreg_token=" in v
        )
        assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
        home = parse_page(client.get("/").text)
        assert "reader" in home.text and "Sign out" in home.text
        out = client.post("/sign-out", data={"csrf": csrf_of(home)})
        assert out.status_code == 303
        assert security.TOKEN_COOKIE not in client.cookies
        assert "Sign in" in parse_page(client.get("/").text).text


def test_a_revoked_token_in_the_cookie_browses_as_anonymous(site, registry_server, admin_api):
    with browser(registry_server.url) as client:
        assert sign_in(client, site["reader"]).status_code == 303
        assert client.get("/adapters/vault/secret").status_code == 200
        tokens = admin_api.get("/v1/tokens", params={"limit": 200}).json()["items"]
        (reader,) = [t for t in tokens if t["name"] == "reader"]
        assert admin_api.delete(f"/v1/tokens/{reader['id']}").is_success
        r = client.get("/adapters/vault/secret")
        assert r.status_code == 404 and "no longer works" in r.text


def test_posts_without_the_csrf_token_or_from_another_site_are_refused(
    site, registry_server, admin_api
):
    job = admin_api.post(
        "/v1/jobs",
        json={
            "type": "combine",
            "inputs": [{"ref": "med-v1", "weight": 0.5}, {"ref": "legal-v1", "weight": 0.5}],
            "params": {"method": "linear"},
            "output": "blend",
        },
    )
    assert job.status_code == 202, job.text
    job_id = job.json()["id"]
    with browser(registry_server.url) as client:
        assert sign_in(client, registry_server.admin_token).status_code == 303
        page = parse_page(client.get(f"/jobs/{job_id}").text)
        token = csrf_of(page)
        cancel = f"/jobs/{job_id}/cancel"
        missing = client.post(cancel, data={})
        forged = client.post(cancel, data={"csrf": "x" * 43})
        cross = client.post(cancel, data={"csrf": token}, headers={"Origin": "https://evil.test"})
        for r in (missing, forged, cross):
            assert r.status_code == 403 and "csrf" in r.text.lower(), r.text
        assert admin_api.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"
        # a login form posted without the token is refused too (no login CSRF)
        with browser(registry_server.url) as fresh:
            r = fresh.post("/sign-in", data={"token": site["reader"]})
            assert r.status_code == 403 and security.TOKEN_COOKIE not in fresh.cookies
        ok = client.post(cancel, data={"csrf": token})
        assert ok.status_code == 303 and ok.headers["location"] == f"/jobs/{job_id}"
    assert admin_api.get(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"


def test_job_pages_show_live_status_and_cancel_only_to_writers(site, registry_server, admin_api):
    body = {
        "type": "combine",
        "inputs": [{"ref": "med-v1", "weight": 0.7}, {"ref": "legal-v1", "weight": 0.3}],
        "params": {"method": "linear"},
        "output": "blend",
    }
    job = admin_api.post("/v1/jobs", json=body).json()
    with browser(registry_server.url) as reader, browser(registry_server.url) as anon:
        assert sign_in(reader, site["reader"]).status_code == 303
        listing = parse_page(reader.get("/jobs").text)
        assert listing.find("tr", **{"data-live-job": job["id"]})
        page = parse_page(reader.get(f"/jobs/{job['id']}").text)
        assert page.find("section", **{"data-live-job": job["id"]})
        assert not page.find("form", class_="cancel-form")  # read-only: no write buttons
        live = anon.get(f"/jobs/{job['id']}/live").json()
        assert (live["status"], live["done"], live["result_ref"]) == ("queued", False, None)
        assert (live["attempts"], live["started_at"]) == (0, None)
        assert run_job(registry_server.ctx, job["id"]) == "succeeded"
        live = anon.get(f"/jobs/{job['id']}/live").json()
        assert (live["status"], live["done"]) == ("succeeded", True)
        assert live["attempts"] == 1 and live["started_at"]  # the page updates these too
        assert live["result_ref"] == "default/blend-v1"
        assert live["result_href"] == "/adapters/default/blend/versions/1"
        done = parse_page(reader.get(f"/jobs/{job['id']}").text)
        assert not done.find("section", **{"data-live-job": job["id"]})
        assert any(e.attrs.get("href") == live["result_href"] for e in done.find("a"))
    with browser(registry_server.url) as admin:
        assert sign_in(admin, registry_server.admin_token).status_code == 303
        other = admin_api.post("/v1/jobs", json={**body, "output": "blend2"}).json()
        assert parse_page(admin.get(f"/jobs/{other['id']}").text).find("form", class_="cancel-form")


def test_base_model_and_audit_pages(site, registry_server, admin_api, base_files):
    r, _ = publish(admin_api, "tiny-llama", base_files, kind="base_model")
    assert r.status_code == 201, r.text
    with browser(registry_server.url) as anon, browser(registry_server.url) as admin:
        listing = anon.get("/base-models")
        assert listing.status_code == 200 and "/base-models/tiny-llama" in listing.text
        page = anon.get("/base-models/tiny-llama")
        assert page.status_code == 200 and "linear modules" in page.text
        assert anon.get("/base-models/no-such-model").status_code == 404
        assert anon.get("/audit").status_code == 401
        with browser(registry_server.url) as reader:  # read-only: no audit link, a 403 page
            assert sign_in(reader, site["reader"]).status_code == 303
            assert not parse_page(reader.get("/").text).find("a", href="/audit")
            assert reader.get("/audit").status_code == 403
        assert sign_in(admin, registry_server.admin_token).status_code == 303
        assert parse_page(admin.get("/").text).find("a", href="/audit")
        audit = parse_page(admin.get("/audit").text)
        assert "alias.set" in audit.text and "version.yank" in audit.text
        filtered = parse_page(admin.get("/audit", params={"action": "version.yank"}).text)
        assert "version.yank" in filtered.text and "alias.set" not in filtered.text


def test_writers_yank_and_unyank_from_the_page_readers_see_no_buttons(
    site, registry_server, admin_api
):
    page = "/adapters/default/legal/versions/1"
    with browser(registry_server.url) as reader, browser(registry_server.url) as admin:
        assert sign_in(reader, site["reader"]).status_code == 303
        assert not parse_page(reader.get(page).text).find("form", class_="write-action")
        assert sign_in(admin, registry_server.admin_token).status_code == 303
        shown = parse_page(admin.get(page).text)
        (form,) = shown.find("form", class_="write-action inline-form")
        assert form.attrs["action"] == page + "/yank"
        # the reader cannot yank by posting the form either (its own CSRF token is valid)
        forged = reader.post(
            page + "/yank", data={"csrf": csrf_of(parse_page(reader.get(page).text))}
        )
        assert forged.status_code == 403
        assert "lacks 'write' scope" in parse_page(forged.text).text
        r = admin.post(page + "/yank", data={"csrf": csrf_of(shown), "reason": "leaks <PII>"})
        assert r.status_code == 303 and r.headers["location"] == page
        version = admin_api.get("/v1/adapters/default/legal/versions").json()["items"][0]
        assert version["yanked"]["reason"] == "leaks <PII>"
        after = admin.get(page)
        assert "leaks &lt;PII&gt;" in after.text
        (unyank,) = parse_page(after.text).find("form", class_="write-action")
        assert unyank.attrs["action"] == page + "/unyank"
        r = admin.post(page + "/unyank", data={"csrf": csrf_of(shown)})
        assert r.status_code == 303
    assert admin_api.get("/v1/adapters/default/legal/versions").json()["items"][0]["yanked"] is None


def test_a_dataset_page_offers_pull_snippets_only(site, registry_server, admin_api):
    data = {"part-1.jsonl": b'{"conversation": [{"human": "hi", "assistant": "hello"}]}\n'}
    push(admin_api, "chats", data, kind="dataset")
    with browser(registry_server.url) as client:
        listed = parse_page(client.get("/datasets").text)
        assert {e.attrs["href"] for e in listed.find("a", class_="result-name")} == {
            "/adapters/default/chats"
        }
        page = parse_page(client.get("/adapters/default/chats").text)
    assert "loreg pull default/chats-v1" in page.text
    assert 'registry.pull("default/chats-v1")' in page.text
    assert "PeftModel" not in page.text and "registry.load" not in page.text

"""``loreg serve --json`` announces itself as one JSON object a script can read."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.e2e.conftest import start_server, stop_process

pytestmark = pytest.mark.e2e


def test_serve_json_announces_url_backends_and_the_first_admin_token(tmp_path):
    data_dir = tmp_path / "data"
    served = start_server(data_dir, extra_args=["--json"])
    try:
        first = served.log_path.read_text().splitlines()[0]
        announced = json.loads(first)
        assert announced["url"] == served.url
        assert (announced["database"], announced["storage"]) == ("sqlite", "local")
        assert announced["admin_token"] == served.token  # == DIR/admin_token
        assert announced["admin_token_file"] == str(data_dir / "admin_token")
        who = httpx.get(
            served.url + "/v1/whoami",
            headers={"Authorization": f"Bearer {announced['admin_token']}"},
        ).json()
        assert who["authenticated"] is True
    finally:
        stop_process(served.process, 10)
    again = start_server(data_dir, extra_args=["--json"], log_path=tmp_path / "second.log")
    try:
        announced = json.loads(again.log_path.read_text().splitlines()[0])
        assert announced["admin_token"] is None and announced["admin_token_file"] is None
    finally:
        stop_process(again.process, 10)

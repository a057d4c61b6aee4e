"""The review UI over HTTP against a real `remediator serve`, a real store and a real Git remote:
pages and filters, the incident page's parts, and who may decide (auth, CSRF, cross-site)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import git
import httpx
import pytest

from agents.config import load_settings
from memory.store import Store
from tests.integration import uiserver
from tests.integration.uiserver import TOKEN, UIServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UIServer]:
    s = uiserver.start(tmp_path_factory.mktemp("ui-http"), http={"trusted_user_header": "X-Forwarded-User"})
    try:
        yield s
    finally:
        uiserver.stop(s.proc)


def client(s: UIServer) -> httpx.Client:
    return httpx.Client(base_url=s.url, follow_redirects=False, timeout=30)


def store_of(s: UIServer) -> Store:
    return Store.open_existing(load_settings(s.config).memory.url)


def test_the_paths_a_new_user_tries(server: UIServer) -> None:
    with client(server) as c:
        assert c.get("/").status_code == 302 and c.get("/").headers["location"] == "/ui/"
        assert c.get("/ui").headers["location"] == "/ui/"
        assert c.get("/incidents?kind=cost_anomaly").headers["location"] == "/ui/incidents?kind=cost_anomaly"
        dash = c.get("/ui/")
        assert dash.status_code == 200 and "Open incidents by kind" in dash.text
        assert "default-src 'none'" in dash.headers["content-security-policy"]
        assert "<script" not in dash.text and "http://" not in dash.text.replace(server.url, "")  # nothing fetched elsewhere
        ready = c.get("/readyz")
        assert ready.status_code == 200 and ready.json() == {"status": "ready", "checks": {"store": "ok", "git": "ok"}}
        css = c.get("/ui/static/ui.css")
        assert css.status_code == 200 and "text/css" in css.headers["content-type"]


def test_list_filters_and_paging(server: UIServer) -> None:
    with client(server) as c:
        every = c.get("/ui/incidents").text
        ids = re.findall(r'href="/ui/incidents/(inc-[0-9a-f]+)"', every)
        assert len(ids) == len(server.report["incidents"]) >= 3
        cost = c.get("/ui/incidents", params={"kind": "cost_anomaly"}).text
        assert re.findall(r'href="/ui/incidents/(inc-[0-9a-f]+)"', cost) == [server.incident("cost_anomaly")["id"]]
        svc = c.get("/ui/incidents", params={"service": "visual-search", "status": "active"}).text
        assert re.findall(r'href="/ui/incidents/(inc-[0-9a-f]+)"', svc) == [server.incident("model_drift")["id"]]
        assert "No incident matches" in c.get("/ui/incidents", params={"severity": "info"}).text
        assert "No incident matches" in c.get("/ui/incidents", params={"since": "2099-01-01"}).text
        assert len(re.findall(r'href="/ui/incidents/inc-', c.get("/ui/incidents", params={"since": "1h"}).text)) == len(ids)
        p1 = c.get("/ui/incidents", params={"per_page": 1}).text
        assert f"page 1 of {len(ids)}" in p1 and 'rel="next" href="/ui/incidents?page=2&amp;per_page=1"' in p1
        p2 = c.get("/ui/incidents", params={"per_page": 1, "page": 2}).text
        assert re.findall(r'href="/ui/incidents/(inc-[0-9a-f]+)"', p2) == [ids[1]] and 'rel="prev"' in p2
        bad = c.get("/ui/incidents", params={"since": "last tuesday"})
        assert bad.status_code == 400 and "since: &#39;last tuesday&#39; is neither a duration" in bad.text
        assert c.get("/ui/incidents", params={"kind": "bogus"}).status_code == 400


def test_incident_page_shows_every_part(server: UIServer) -> None:
    inc = server.incident("cost_anomaly")
    with client(server) as c:
        page = c.get(f"/ui/incidents/{inc['id']}").text
        svg = re.search(r"<svg xmlns=.*?</svg>", page, re.S)
        assert svg is not None
        root = ET.fromstring(svg.group(0))
        assert {"band", "excursion", "signal"} <= {el.get("class") for el in root.iter()}
        for part in ('id="evidence"', "expected range usd per hour:", 'id="findings"', "cap_max_replicas",
                     'id="rationale"', "Guard: <span class=\"verdict accepted\">accepted</span>",
                     "Diff <span class=\"muted\">(from the PR&#39;s commits)</span>", "diff --git a/apps/ml-serving/",
                     "**Roll back:**", 'id="decisions"', "No decision yet.", "Hash chain intact:", "pr_opened",
                     "incident_opened"):
            assert part in page, part
        assert re.search(r'<span class="del">-\s+maxReplicas: 6</span>', page)
        assert re.search(r'<span class="add">\+\s+maxReplicas: 3</span>', page)
        assert 'id="approve"' not in page and "Sign in</a> to approve or reject" in page   # anonymous: no buttons
        assert c.get("/ui/incidents/inc-nope").status_code == 404
        drift = c.get(f"/ui/incidents/{server.incident('model_drift')['id']}").text   # no series: class shares
        svg = re.search(r"<svg xmlns=.*?</svg>", drift, re.S)
        assert svg is not None and {"current", "baseline"} <= {el.get("class") for el in ET.fromstring(svg.group(0)).iter()}
        assert "rollback_model_version" in drift


def _csrf(page: str) -> str:
    m = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert m is not None
    return m.group(1)


def test_who_may_decide(server: UIServer) -> None:
    inc = server.incident("model_drift")
    url = f"/ui/incidents/{inc['id']}/decide"
    store = store_of(server)
    with client(server) as c:
        r = c.post(url, data={"verdict": "reject"})
        assert r.status_code == 401 and "Sign in first" in r.text
        assert c.post(url, data={"verdict": "reject"}, headers={"Authorization": "Bearer wrong-token"}).status_code == 401
        assert c.post("/ui/login", data={"token": "wrong", "next": "/ui/"}).status_code == 401
        # sign in with the token: a session cookie
        r = c.post("/ui/login", data={"token": TOKEN, "next": f"/ui/incidents/{inc['id']}"})
        assert r.status_code == 303 and r.headers["location"] == f"/ui/incidents/{inc['id']}"
        assert "httponly" in r.headers["set-cookie"].lower() and "samesite=strict" in r.headers["set-cookie"].lower()
        page = c.get(f"/ui/incidents/{inc['id']}").text
        assert 'id="approve"' in page and 'id="user">token<' in page
        csrf = _csrf(page)
        # a session without the form's CSRF token, or from another site, is refused
        assert c.post(url, data={"verdict": "reject"}).status_code == 403
        assert c.post(url, data={"verdict": "reject", "csrf": "0" * 40}).status_code == 403
        r = c.post(url, data={"verdict": "reject", "csrf": csrf}, headers={"Origin": "http://evil.example"})
        assert r.status_code == 403 and "another site" in r.text
        r = c.post(url, data={"verdict": "reject", "csrf": csrf}, headers={"Sec-Fetch-Site": "cross-site"})
        assert r.status_code == 403
        assert c.post(url, data={"verdict": "maybe", "csrf": csrf}).status_code == 400
        assert store.get_incident(inc["id"]).status == "proposed" and not store.list_decisions(incident_id=inc["id"])
        # the proxy's user header, from a trusted proxy (loopback here), with the page's CSRF token
        c.cookies.clear()
        hdr = {"X-Forwarded-User": "alice@example.com", "Origin": server.url}
        page = c.get(f"/ui/incidents/{inc['id']}", headers=hdr).text
        assert 'id="user">alice@example.com<' in page
        r = c.post(url, data={"verdict": "reject", "reason": "not now", "csrf": _csrf(page)}, headers=hdr)
        assert r.status_code == 303 and r.headers["location"].endswith("?decided=reject")
    d = store.list_decisions(incident_id=inc["id"])
    assert [(x.verdict, x.actor, x.source, x.reason) for x in d] == [("reject", "ui:alice@example.com", "ui", "not now")]
    assert store.get_incident(inc["id"]).status == "rejected"
    entry = [e for e in store.audit.entries() if e.stage == "decision" and e.subject == inc["id"]][-1]
    assert entry.data["actor"] == "ui:alice@example.com" and entry.data["source"] == "ui"
    pr = next(p for p in store.list_prs() if inc["id"] in p.incident_ids)
    assert pr.status == "closed" and pr.branch not in [h.name for h in git.Repo(server.remote).heads]


def test_bearer_approve_merges_through_the_same_path(server: UIServer) -> None:
    inc = server.incident("cost_anomaly")
    with client(server) as c:
        r = c.post(f"/ui/incidents/{inc['id']}/decide", data={"verdict": "approve"},
                   headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 303, r.text
        page = c.get(r.headers["location"]).text
        assert "Approved." in page and 'id="status">approved<' in page and "ui:token" in page
        again = c.post(f"/ui/incidents/{inc['id']}/decide", data={"verdict": "reject"},
                       headers={"Authorization": f"Bearer {TOKEN}"})
        assert again.status_code == 303   # idempotent: the earlier decision stands
    store = store_of(server)
    assert [(d.verdict, d.actor, d.source) for d in store.list_decisions(incident_id=inc["id"])] == \
        [("approve", "ui:token", "ui")]
    main = git.Repo(server.remote).heads["main"].commit
    assert "maxReplicas: 3" in (main.tree / "apps/ml-serving/image-captioner.yaml").data_stream.read().decode()
    assert store.audit.verify().ok
    # the dashboard counts the merge and the spend it avoids (the anomaly's extra $/month, method stated)
    extra = store.get_incident(inc["id"]).evidence["extra_usd_per_month"]
    with client(server) as c:
        dash = c.get("/ui/").text
    assert f"${extra:,.0f} <span" in dash and "Method:" in dash
    assert re.search(r"<th>merged</th><td class=\"num\">1</td>", dash)


def test_no_auth_configured_means_read_only(tmp_path: Path) -> None:
    s = uiserver.start(tmp_path / "ro", http={"ui_token_file": None})
    try:
        inc = s.incident("cost_anomaly")
        with client(s) as c:
            page = c.get(f"/ui/incidents/{inc['id']}").text
            assert 'id="approve"' not in page and "Decisions in the UI need" in page
            r = c.post(f"/ui/incidents/{inc['id']}/decide", data={"verdict": "approve"},
                       headers={"Authorization": f"Bearer {TOKEN}", "X-Forwarded-User": "mallory"})
            assert r.status_code == 403 and "Decisions are off" in r.text
    finally:
        uiserver.stop(s.proc)
    assert Store.open_existing(load_settings(s.config).memory.url).list_decisions() == []


def test_pages_can_require_sign_in(tmp_path: Path) -> None:
    s = uiserver.start(tmp_path / "private", http={"ui_require_sign_in": True})
    try:
        inc = s.incident("cost_anomaly")
        with client(s) as c:
            for path in ("/ui/", "/ui/incidents?kind=cost_anomaly", f"/ui/incidents/{inc['id']}"):
                r = c.get(path)
                assert r.status_code == 303 and r.headers["location"].startswith("/ui/login?next=/ui/"), path
                assert inc["id"] not in r.text
            assert c.get("/ui/login").status_code == 200 and c.get("/ui/static/ui.css").status_code == 200
            page = c.get(f"/ui/incidents/{inc['id']}", headers={"Authorization": f"Bearer {TOKEN}"})
            assert page.status_code == 200 and inc["id"] in page.text
            # guessing the token: five failures, then even the right one waits
            assert [c.post("/ui/login", data={"token": f"guess-{i}"}).status_code for i in range(5)] == [401] * 5
            r = c.post("/ui/login", data={"token": TOKEN})
            assert r.status_code == 429 and "Too many failed sign-ins" in r.text and "set-cookie" not in r.headers
    finally:
        uiserver.stop(s.proc)

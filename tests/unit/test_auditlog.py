from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tools.auditlog import JsonLinesAuditLog

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def event(i: int, **kw: object) -> str:
    e = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Request", "auditID": f"id-{i}",
         "stage": "ResponseComplete", "requestURI": f"/apis/apps/v1/namespaces/ml/deployments/d{i}/scale",
         "verb": "update", "user": {"username": "alice@example.com", "groups": ["devs", "system:authenticated"]},
         "sourceIPs": ["10.0.0.7"], "userAgent": "kubectl/v1.30.4",
         "objectRef": {"resource": "deployments", "namespace": "ml", "name": f"d{i}", "apiGroup": "apps",
                       "apiVersion": "v1", "subresource": "scale"},
         "responseStatus": {"metadata": {}, "code": 200},
         "requestObject": {"kind": "Scale", "spec": {"replicas": 9}},
         "requestReceivedTimestamp": (T0 + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
         "stageTimestamp": (T0 + timedelta(minutes=i, seconds=1)).isoformat()}
    e.update(kw)
    return json.dumps(e) + "\n"


def write(path: Path, *lines: str, mode: str = "a") -> None:
    with path.open(mode) as f:
        f.write("".join(lines))


def test_fields_since_and_cursor_resume(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    write(log, *(event(i) for i in range(5)))
    src = JsonLinesAuditLog(paths=[log])
    events, cursor = src.read(cursor=None, since=T0 + timedelta(minutes=2))
    assert [e.audit_id for e in events] == ["id-2", "id-3", "id-4"] and src.last_problems == []
    e = events[0]
    assert (e.at, e.verb, e.user, e.groups, e.user_agent, e.source_ips) == (
        T0 + timedelta(minutes=2), "update", "alice@example.com", ("devs", "system:authenticated"), "kubectl/v1.30.4",
        ("10.0.0.7",))
    assert (e.resource, e.subresource, e.namespace, e.name, e.api_group, e.code) == (
        "deployments", "scale", "ml", "d2", "apps", 200)
    assert e.request_object == {"kind": "Scale", "spec": {"replicas": 9}}
    assert e.request_uri.endswith("/d2/scale")
    assert json.loads(cursor)[str(log)]["offset"] == log.stat().st_size

    assert src.read(cursor=cursor, since=T0)[0] == []            # nothing new
    write(log, event(6), event(1))                                # older timestamps after a cursor still count
    events, cursor2 = src.read(cursor=cursor, since=T0 + timedelta(days=1))
    assert [e.audit_id for e in events] == ["id-1", "id-6"]       # sorted by time
    assert src.read(cursor=cursor2, since=T0)[0] == []


def test_partial_last_line_waits(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    line = event(1)
    write(log, event(0), line[:40])
    src = JsonLinesAuditLog(paths=[log])
    events, cursor = src.read(cursor=None, since=T0)
    assert [e.audit_id for e in events] == ["id-0"] and src.last_problems == []
    write(log, line[40:])
    assert [e.audit_id for e in src.read(cursor=cursor, since=T0)[0]] == ["id-1"]


def test_rotation_and_truncation_restart_at_zero(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    write(log, *(event(i) for i in range(3)))
    src = JsonLinesAuditLog(paths=[log])
    _, cursor = src.read(cursor=None, since=T0)
    os.rename(log, tmp_path / "audit.log.1")                       # logrotate: new inode
    write(log, event(10))
    events, cursor = src.read(cursor=cursor, since=T0 + timedelta(days=1))  # since does not apply after rotation
    assert [e.audit_id for e in events] == ["id-10"]
    write(log, event(11), mode="w")                                # copytruncate (same inode), then the file
    write(log, event(12))                                          # grew past the old offset: the head tells
    events, _ = src.read(cursor=cursor, since=T0)
    assert [e.audit_id for e in events] == ["id-11", "id-12"]
    log.write_text("")                                             # truncated to empty
    assert src.read(cursor=cursor, since=T0)[0] == []


def test_malformed_lines_missing_files_and_bad_cursor(tmp_path: Path) -> None:
    log, gone = tmp_path / "audit.log", tmp_path / "missing.log"
    write(log, event(0), "{not json\n", "\n", json.dumps({"kind": "Event", "verb": "get"}) + "\n", "[1, 2]\n",
          event(1, stage="RequestReceived"), event(2))
    src = JsonLinesAuditLog(paths=[gone, log])
    events, cursor = src.read(cursor=None, since=T0)
    assert [e.audit_id for e in events] == ["id-0", "id-2"]
    assert len(src.last_problems) == 4
    assert src.last_problems[0].startswith(f"{gone}: cannot read audit log")
    assert [p.split(": ")[0] for p in src.last_problems[1:3]] == [f"{log}:2", f"{log}:5"]
    # line 4 has no apiVersion: not an audit.k8s.io/v1 Event, counted apart
    assert src.last_problems[3].startswith("1 line(s) were not audit.k8s.io/v1 Events") and f"{log}:4" in src.last_problems[3]
    assert str(gone) not in json.loads(cursor)
    events, _ = src.read(cursor="garbage", since=T0 + timedelta(minutes=1))
    assert [e.audit_id for e in events] == ["id-2"] and any(p.startswith("cursor:") for p in src.last_problems)


def test_event_list_and_naive_since(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    write(log, json.dumps({"kind": "EventList", "items": [json.loads(event(0)), json.loads(event(1))]}) + "\n")
    events, _ = JsonLinesAuditLog(paths=[log]).read(cursor=None, since=datetime(2026, 11, 20, 10, 1))
    assert [e.audit_id for e in events] == ["id-1"]


# ----------------------------------------------------------------------------- rotation
# Each case: events 0-2 read, then 3-4 appended to the same file and the file rotated before the
# next read, then 5-6 in the new file. Every event must be read exactly once.

def _ids(events: list) -> list[str]:  # type: ignore[type-arg]
    return [e.audit_id for e in events]


def _first_read(tmp_path: Path) -> tuple[Path, JsonLinesAuditLog, str]:
    log = tmp_path / "audit.log"
    write(log, *(event(i) for i in range(3)))
    src = JsonLinesAuditLog(paths=[log])
    events, cursor = src.read(cursor=None, since=T0)
    assert _ids(events) == ["id-0", "id-1", "id-2"]
    write(log, event(3), event(4))   # after the read, before the rotation
    return log, src, cursor


def test_rename_rotation_drains_the_old_file_first(tmp_path: Path) -> None:
    log, src, cursor = _first_read(tmp_path)
    os.rename(log, tmp_path / "audit.log.1")
    write(log, event(5), event(6), mode="w")
    events, cursor = src.read(cursor=cursor, since=T0)
    assert _ids(events) == ["id-3", "id-4", "id-5", "id-6"] and src.last_problems == []
    write(log, event(7))
    assert _ids(src.read(cursor=cursor, since=T0)[0]) == ["id-7"]   # nothing read twice afterwards


def test_copytruncate_rotation_drains_the_copy(tmp_path: Path) -> None:
    log, src, cursor = _first_read(tmp_path)
    (tmp_path / "audit.log.1").write_bytes(log.read_bytes())   # logrotate's copytruncate: copy, then truncate
    with log.open("r+") as f:
        f.truncate(0)
    write(log, event(5), event(6))
    events, _ = src.read(cursor=cursor, since=T0)
    assert _ids(events) == ["id-3", "id-4", "id-5", "id-6"] and src.last_problems == []


def test_gzip_rotated_file_is_drained(tmp_path: Path) -> None:
    import gzip

    log, src, cursor = _first_read(tmp_path)
    rotated = tmp_path / "audit.log.1"
    os.rename(log, rotated)
    with rotated.open("rb") as plain, gzip.open(tmp_path / "audit.log.1.gz", "wb") as gz:
        gz.write(plain.read())
    rotated.unlink()                                            # compress: the inode is gone, the bytes are not
    write(log, event(5), event(6), mode="w")
    events, _ = src.read(cursor=cursor, since=T0)
    assert _ids(events) == ["id-3", "id-4", "id-5", "id-6"] and src.last_problems == []


def test_two_rotations_between_reads_read_the_middle_file_whole(tmp_path: Path) -> None:
    log, src, cursor = _first_read(tmp_path)
    os.rename(log, tmp_path / "audit.log.2")
    os.utime(tmp_path / "audit.log.2", (1_700_000_000, 1_700_000_000))
    write(log, event(5), event(6), mode="w")
    os.rename(log, tmp_path / "audit.log.1")
    os.utime(tmp_path / "audit.log.1", (1_700_000_100, 1_700_000_100))
    write(log, event(7), mode="w")
    events, cursor = src.read(cursor=cursor, since=T0 + timedelta(days=30))  # 'since' does not apply to rotated files
    assert _ids(events) == ["id-3", "id-4", "id-5", "id-6", "id-7"] and src.last_problems == []
    assert src.read(cursor=cursor, since=T0)[0] == []


def test_a_rotated_file_that_is_gone_is_reported(tmp_path: Path) -> None:
    log, src, cursor = _first_read(tmp_path)
    log.unlink()
    write(log, event(5), mode="w")
    events, _ = src.read(cursor=cursor, since=T0)
    assert _ids(events) == ["id-5"]
    assert any("rotated, and the file read up to byte" in p for p in src.last_problems)


def test_only_audit_k8s_io_v1_events_count(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    pod = json.loads(event(1))
    pod.update(kind="Pod", apiVersion="v1")
    old = json.loads(event(2))
    old["apiVersion"] = "audit.k8s.io/v1beta1"
    write(log, event(0), json.dumps(pod) + "\n", json.dumps(old) + "\n",
          json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1",
                      "items": [{k: v for k, v in json.loads(event(3)).items() if k not in ("kind", "apiVersion")}]}) + "\n")
    src = JsonLinesAuditLog(paths=[log])
    events, _ = src.read(cursor=None, since=T0)
    assert [e.audit_id for e in events] == ["id-0", "id-3"]   # a webhook batch's items inherit its apiVersion
    [problem] = src.last_problems
    assert problem.startswith("2 line(s) were not audit.k8s.io/v1 Events") and f"{log}:2" in problem


def test_a_huge_request_object_is_truncated_and_says_so(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    big = json.loads(event(0))
    big["requestObject"] = {"kind": "Deployment", "spec": {"replicas": 7, "template": {"junk": "x" * 1_000_000}}}
    write(log, json.dumps(big) + "\n", event(1))
    events, _ = JsonLinesAuditLog(paths=[log]).read(cursor=None, since=T0)
    ro = events[0].request_object
    assert ro is not None and ro["truncated"] is True and ro["bytes"] > 1_000_000
    assert ro["kind"] == "Deployment" and ro["spec"] == {"replicas": 7}
    assert events[1].request_object == {"kind": "Scale", "spec": {"replicas": 9}}   # small ones are kept whole

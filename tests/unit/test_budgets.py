"""policies/budgets.yaml as typed models: a bad budget is one problem naming the file, the budget
and the field (it is skipped, the others kept), never an exception in a later stage."""

from __future__ import annotations

from typing import Any

import pytest

from agents.workloads import Budget, build_workloads, load_budgets, select_workloads, workload_problems
from tests.fakes.cycle import mis

GOOD = {"name": "ml-gpu", "selector": {"namespace": "ml-serving"}, "monthly_usd": 20000}


@pytest.mark.parametrize(("bad", "field"), [
    ({"resources": ["tpu", 5]}, "resources"),
    ({"resources": "gpu"}, "resources"),
    ({"selector": 5}, "selector"),
    ({"selector": {"labels": 7}}, "selector.labels"),
    ({"selector": {"team": "a"}}, "selector.team"),
    ({"action": "delete_everything"}, "action"),
    ({"monthly_usd": -5}, "monthly_usd"),
    ({"monthly_usd": "lots"}, "monthly_usd"),
    ({"monthly_usd": 1e400}, "monthly_usd"),
    ({"alert_at_percent": 0}, "alert_at_percent"),
])
def test_a_bad_budget_is_a_problem_and_the_others_are_kept(bad: dict[str, Any], field: str) -> None:
    budgets, problems = load_budgets([GOOD, {**GOOD, "name": "broken", **bad}])
    assert [b.name for b in budgets] == ["ml-gpu"]
    [p] = problems
    assert p.path == "policies/budgets.yaml" and "budgets[1] (broken)" in p.message and field in p.message
    assert "skipped" in p.message


def test_not_a_list_of_mappings() -> None:
    budgets, problems = load_budgets([GOOD, "nonsense", 7])
    assert [b.name for b in budgets] == ["ml-gpu"] and len(problems) == 2


def test_label_selector_values_compare_as_text() -> None:
    wl = build_workloads([mis("a", labels={"tier": "1"}), mis("b", labels={"tier": "2"})])
    b = Budget.model_validate({"name": "t1", "selector": {"labels": {"tier": 1}}, "monthly_usd": 10})
    assert [w.key for w in select_workloads(b, wl)] == ["ml-serving/a"]
    assert select_workloads(Budget.model_validate({"name": "none", "monthly_usd": 10}), wl) == []


@pytest.mark.parametrize(("lo", "hi", "says"), [
    (-1, 4, "minReplicas is -1"),
    (2, 1.0e400, "maxReplicas is inf"),
    (2, 2.5, "maxReplicas is 2.5"),
    (5, 3, "minReplicas 5 is above maxReplicas 3"),
    (2, "many", "maxReplicas is 'many'"),
])
def test_replica_bounds_no_controller_accepts_are_problems_naming_the_file(lo: Any, hi: Any, says: str) -> None:
    doc = mis("a")
    doc.body["spec"]["autoscaling"].update(minReplicas=lo, maxReplicas=hi)
    wl = build_workloads([doc])
    problems = workload_problems(wl)
    assert problems and all(p.path == doc.file for p in problems)
    assert any(says in p.message for p in problems), [p.message for p in problems]
    assert workload_problems(build_workloads([mis("b")])) == []

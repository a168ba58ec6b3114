"""The rule tables as data: unique IDs, references that resolve, table order = report order,
and the generic runner (shared check functions run once, preconditions skip)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from hardflow.audit.image_checks import CHECKS as IMAGE_CHECKS
from hardflow.audit.image_rules import IMAGE_RULES
from hardflow.audit.manifest_checks import CHECKS as MANIFEST_CHECKS
from hardflow.audit.manifest_rules import MANIFEST_RULES
from hardflow.audit.model import (
    Item,
    Level,
    Outcome,
    Rule,
    Verdict,
    always_skip,
    checks_by_id,
    run_rules,
)

TABLES: dict[str, Sequence[Rule[Any]]] = {"image": IMAGE_RULES, "manifests": MANIFEST_RULES}


@pytest.mark.parametrize("kind", sorted(TABLES))
def test_ids_unique_and_references_resolve(kind: str) -> None:
    rules = TABLES[kind]
    ids = [r.id for r in rules]
    assert len(ids) == len(set(ids))
    for rule in rules:
        # a reference names another rule of the same table, so a report can link them
        assert set(rule.references) <= set(ids) - {rule.id}, rule.id
        assert rule.title and rule.remediation and rule.group
        assert rule.level in (Level.INFO, Level.WARN, Level.FATAL)


def test_checks_follow_table_order() -> None:
    assert list(IMAGE_CHECKS) == [r.id for r in IMAGE_RULES]
    assert list(MANIFEST_CHECKS) == [r.id for r in MANIFEST_RULES]
    assert IMAGE_CHECKS["4.1"] == IMAGE_RULES[0].check


def test_image_ids_and_order_are_stable() -> None:
    """Report order is an interface (docker-bench style sections); new rules go at the end."""
    assert list(IMAGE_CHECKS)[:8] == ["4.1", "4.3", "4.6", "4.7", "4.8", "4.9", "4.10", "4.12"]
    assert list(IMAGE_CHECKS)[-6:] == ["HF-R-0001", "HF-R-0002", "HF-R-0003", "HF-R-0004",
                                       "HF-L-0001", "HF-L-0002"]  # fmt: skip
    manifest_ids = list(MANIFEST_CHECKS)
    assert (manifest_ids[0], manifest_ids[-2], manifest_ids[-1]) == (
        "5.4", "PSS-R-Capabilities", "HF-M-0001"
    )  # fmt: skip


def test_duplicate_ids_are_refused() -> None:
    row: Rule[object] = Rule("X-1", Level.WARN, "g", "t", "fix", lambda _: [])
    with pytest.raises(ValueError, match="X-1"):
        checks_by_id([row, row])


def test_shared_check_runs_once_and_each_row_gets_a_finding() -> None:
    calls: list[str] = []

    def shared(subject: str) -> Verdict:
        calls.append(subject)
        return [Item(subject, "bad")]

    def never(_: str) -> Verdict:
        raise AssertionError("a rule whose precondition fails is not evaluated")

    rules: list[Rule[str]] = [
        Rule("A", Level.WARN, "g", "a", "fix", shared),
        Rule("B", Level.FATAL, "g", "b", "fix", shared, ("A",)),
        Rule("C", Level.WARN, "g", "c", "fix", never, precondition=lambda s: "not here"),
        Rule("D", Level.INFO, "g", "d", "fix", always_skip("needs a scanner")),
        Rule("E", Level.WARN, "g", "e", "fix", lambda _: Outcome(note="fine")),
    ]
    findings = run_rules(rules, "x")
    assert calls == ["x"]
    assert [(f.id, f.level) for f in findings] == [
        ("A", Level.WARN),
        ("B", Level.FATAL),
        ("C", Level.SKIP),
        ("D", Level.SKIP),
        ("E", Level.PASS),
    ]
    assert findings[0].items == findings[1].items == (Item("x", "bad"),)
    assert findings[2].note == "not here" and findings[3].note == "needs a scanner"
    assert findings[4].note == "fine"

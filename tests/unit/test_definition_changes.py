"""What `register` says changed when a flow is refused under an existing version."""

from __future__ import annotations

from floxy_core.builder import Builder, Options


def test_the_refusal_lists_the_changes_and_bounds_them() -> None:
    old = Builder("o").step("a").step("b").build()
    new = Builder("o").step("a", options=Options(max_retries=5)).step("c").build()
    changes = new.changes_from(old)
    assert "step c added" in changes and "step b removed" in changes
    assert "step a: max_retries 3 → 5" in changes
    assert 'step a: next ["b"] → ["c"]' in changes
    message = new.conflict_message(old)
    assert message.startswith("workflow o-v1 is already registered with different content (")
    assert message.endswith("); bump `version` to register a changed flow")
    many = Builder("o")
    for i in range(9):
        many = many.step(f"s{i}")
    assert new.changes_from(many.build())[-1].endswith(" more")
    assert len(new.changes_from(many.build())) == 6


def test_a_handlers_exec_is_not_a_change() -> None:
    old = Builder("o").step("a", options=Options(metadata={"exec": "/old/path.sh"})).build()
    new = Builder("o").step("a", options=Options(metadata={"exec": "/new/path.sh"})).build()
    assert new.content_hash == old.content_hash and new.changes_from(old) == []

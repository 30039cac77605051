"""The pure parts of run coordination: which paths a claim marks, which physical ids are one resource."""

from __future__ import annotations

from luna_ha.coordination import PartitionRecord, ancestors
from luna_ha.ownership import resource_identity


def test_a_claim_marks_every_path_above_it_shallowest_first() -> None:
    assert ancestors("/luna-ha/team/payments") == ["/luna-ha", "/luna-ha/team"]
    assert ancestors("/luna-ha") == []


def test_a_sibling_that_shares_a_prefix_is_not_an_ancestor() -> None:
    assert "/luna-ha/orders" not in ancestors("/luna-ha/orders2/x")


def test_replacements_of_one_logical_resource_are_one_resource() -> None:
    first = "luna-ha/payments-stack/Group/payments/3f2a1c0d"
    replaced = "luna-ha/payments-stack/Group/payments2/3f2a1c0d"
    assert resource_identity(first) == resource_identity(replaced) == "luna-ha/payments-stack/Group/3f2a1c0d"


def test_other_stacks_logical_ids_and_cli_ids_are_other_resources() -> None:
    mine = resource_identity("luna-ha/payments-stack/Group/payments/3f2a1c0d")
    assert resource_identity("luna-ha/payments-stack/Group/payments/99999999") != mine  # another stack
    assert resource_identity("luna-ha/payments-stack/Other/payments/3f2a1c0d") != mine
    assert resource_identity("luna-ha-cli/payments") == "luna-ha-cli/payments"


def test_a_partition_record_is_this_resources_only_for_the_partition_it_describes() -> None:
    record = PartitionRecord("150001", "payments", owner="id-a", state="created", serial="150001008")
    assert record.belongs_to("id-a", "150001008")
    assert not record.belongs_to("id-b", "150001008")
    assert not record.belongs_to("id-a", "150001009")  # deleted by hand and made again by someone
    unfinished = PartitionRecord("150001", "payments", owner="id-a", state="creating")
    assert unfinished.belongs_to("id-a", "150001008")  # created by a run that stopped before recording

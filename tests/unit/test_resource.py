"""CloudFormation semantics that need no appliance: physical ids and reasons."""

from __future__ import annotations

import pytest

from luna_ha.engine import ApplianceReport, GroupRunError, RunReport
from luna_ha.errors import ApplianceError, SpecError, StoreError
from luna_ha.resource import MAX_REASON, GroupResource, physical_id_for, short_reason

STACK = "arn:aws:cloudformation:us-east-1:123456789012:stack/payments/0f3c5e10-1111-2222-3333-444455556666"


def event(**props: object) -> dict[str, object]:
    return {
        "StackId": STACK,
        "LogicalResourceId": "Group",
        "ResourceProperties": {"PartitionName": "payments", **props},
    }


def test_physical_id_is_deterministic_and_names_stack_logical_id_and_partition() -> None:
    first, second = physical_id_for(event()), physical_id_for(event(GroupLabel="other"))
    assert first == second
    assert first.startswith("luna-ha/payments/Group/payments/")


def test_physical_id_changes_with_partition_name_and_with_the_stack() -> None:
    assert physical_id_for(event()) != physical_id_for(event(PartitionName="orders"))
    other_stack = {**event(), "StackId": STACK.replace("0f3c5e10", "0f3c5e11")}
    assert physical_id_for(event()) != physical_id_for(other_stack)


def test_physical_id_of_invalid_properties_is_still_safe_and_short() -> None:
    pid = physical_id_for(event(PartitionName="x" * 5000 + "\n;rm"))
    assert "\n" not in pid and ";" not in pid and len(pid) < 1024
    assert physical_id_for({"StackId": STACK, "LogicalResourceId": "G"}).startswith(
        "luna-ha/payments/G/unnamed/"
    )


def test_reason_names_the_property() -> None:
    assert short_reason(SpecError("Appliances[1].Host", "bad")) == "Property Appliances[1].Host: bad"


def test_reason_puts_the_first_failed_appliance_first_and_counts_the_others() -> None:
    reports = [
        ApplianceReport("10.0.0.1", error=ApplianceError("10.0.0.1", "connect", "refused " + "x" * 400)),
        ApplianceReport("10.0.0.2"),
        ApplianceReport("10.0.0.3", error=ApplianceError("10.0.0.3", "hsm login", "no")),
    ]
    reason = short_reason(GroupRunError(RunReport("apply", reports)))
    assert reason.startswith("Appliance 10.0.0.1, step 'connect': refused")
    assert reason.endswith("(+1 more appliance(s) failed)")
    assert len(reason) <= MAX_REASON


def test_unexpected_errors_do_not_leak_their_text() -> None:
    reason = short_reason(KeyError("s3cret-value"))
    assert "s3cret" not in reason and "KeyError" in reason


# --- Delete with properties that do not parse ------------------------------------------------------


class PathReader:
    """An engine stand-in that records which path a Delete looked at, and fails to read it if told."""

    def __init__(self, fail: bool = False) -> None:
        self.paths: list[str] = []
        self.fail = fail

    def destroy_published(self, path: str, physical_id: str, **_: object) -> None:
        self.paths.append(path)
        if self.fail:
            raise StoreError(f"Cannot read parameters under {path}: AccessDeniedException")


def delete_event(**props: object) -> dict[str, object]:
    return {**event(**props), "RequestType": "Delete", "PhysicalResourceId": "luna-ha/p/Group/payments/1"}


@pytest.mark.parametrize(
    ("props", "path"),
    [
        ({"Unknown": "x"}, "/luna-ha/payments"),  # the default path of a readable PartitionName
        ({"Unknown": "x", "ParameterPath": "/apps/orders"}, "/apps/orders"),
        ({"Unknown": "x", "ParameterPath": "not a path"}, None),
        ({"Unknown": "x", "PartitionName": 42}, None),
    ],
)
def test_a_delete_that_does_not_parse_looks_for_its_group_document_where_the_properties_point(
    props: dict[str, object], path: str | None
) -> None:
    engine = PathReader()

    outcome = GroupResource(lambda: engine).delete(delete_event(**props), 300.0)  # type: ignore[arg-type,return-value]

    assert engine.paths == ([path] if path else [])
    assert outcome.physical_id == "luna-ha/p/Group/payments/1" and outcome.report is None


def test_a_delete_that_does_not_parse_and_cannot_read_its_path_still_succeeds() -> None:
    engine = PathReader(fail=True)

    outcome = GroupResource(lambda: engine).delete(delete_event(Unknown="x"), 300.0)  # type: ignore[arg-type,return-value]

    assert engine.paths == ["/luna-ha/payments"] and outcome.report is None

"""Shared fixtures: a clean, offline AWS environment for moto."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto import mock_aws

pytest_plugins = ("tests.secret_scan",)  # fails a functional test whose product output holds a secret


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials and a region; nothing that could reach a real AWS account."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")


@pytest.fixture
def aws(aws_env: None) -> Iterator[None]:
    """moto in process (``mock_aws``) on top of ``aws_env``."""
    with mock_aws():
        yield

"""The AWS settings a command line needs, checked before any work, each missing one said in one line.

botocore reads the region from ``AWS_DEFAULT_REGION`` or the profile only. ``AWS_REGION``, which the
AWS CLI v2 and the other SDKs read first (and which Lambda sets), is honoured by copying it over.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

from botocore.exceptions import BotoCoreError, NoCredentialsError, NoRegionError

from luna_ha.errors import SetupError

NO_REGION = "no AWS region: set AWS_REGION, or a region in the AWS profile"
NO_CREDENTIALS = (
    "no AWS credentials: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
    "or run with an instance role"
)


def honour_aws_region(environ: MutableMapping[str, str] | None = None) -> None:
    """Make ``AWS_REGION``, when set, the region boto3 uses (it wins over ``AWS_DEFAULT_REGION``
    and the profile's region, as in the AWS CLI v2)."""
    env = os.environ if environ is None else environ
    region = env.get("AWS_REGION", "").strip()
    if region:
        env["AWS_DEFAULT_REGION"] = region


def describe(exc: BotoCoreError) -> str:
    """One line for a botocore error that is the user's setup, not a bug."""
    if isinstance(exc, NoRegionError):
        return NO_REGION
    if isinstance(exc, NoCredentialsError):
        return NO_CREDENTIALS
    return f"AWS: {exc}"


def check_aws_setup() -> None:
    """Raise :class:`SetupError` unless boto3 finds a region and credentials."""
    import boto3

    try:
        session = boto3.session.Session()
        if not session.region_name:
            raise SetupError(NO_REGION)
        if session.get_credentials() is None:
            raise SetupError(NO_CREDENTIALS)
    except BotoCoreError as exc:  # a profile that does not exist, partial credentials, ...
        raise SetupError(describe(exc)) from None

"""Security scanners with zero unexplained findings: checkov and cfn-lint on the templates, bandit
on the code.

Each scanner runs with every check on; what it reports must be exactly the findings listed here,
each with the reason it is accepted. A new finding fails (fix it, or explain it here), and so does
an explanation whose finding is gone (delete it). Nothing is suppressed in the templates or the code
except the one ``# nosec B601`` that ``scp.py`` carries with its reason.

checkov pins an older boto3 than the project, so it lives in ``.venv-checkov`` (``make test``
creates it, as ``.venv-sam``); it runs with ``--skip-download`` and ``BC_SKIP_MAPPING``, so it
never reaches the network. Where it is not installed the checkov test fails, unless
``LUNA_HA_SKIP_CHECKOV=1`` says to skip it. bandit and cfn-lint are dev dependencies of the project.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cfnlint.api import ManualArgs, lint_file

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = [REPO / "templates" / "provider.yaml", REPO / "templates" / "example-group.yaml"]
CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"
SKIP_CHECKOV = "LUNA_HA_SKIP_CHECKOV"
# What bandit reads: the package and the lab (the AWS test doubles of the demo extra).
CODE = ("functions", "lab/luna_ha_lab")

# (check id, resource): why the finding is accepted.
CHECKOV_EXPLAINED = {
    ("CKV_AWS_116", "AWS::Serverless::Function.Function"): (
        "no dead-letter queue: CloudFormation invokes the function asynchronously with "
        "MaximumRetryAttempts 0 and every event is answered (FAILED too) through its response URL; "
        "a queued event would hold the pre-signed ResponseURL and nothing would replay it"
    ),
    ("CKV_AWS_115", "AWS::Serverless::Function.Function"): (
        "no reserved concurrency: events are rare and a Delete may arrive while a Create still runs, "
        "which a limit of 1 would throttle; reserving concurrency only takes from the account pool"
    ),
    ("CKV_AWS_173", "AWS::Serverless::Function.Function"): (
        "no customer managed key for environment variables: they hold no secret (service name, "
        "metrics namespace, log level, response margin); Lambda encrypts them at rest by default"
    ),
    ("CKV_AWS_158", "AWS::Logs::LogGroup.FunctionLogGroup"): (
        "no customer managed key for the log group: nothing secret is ever logged (tests/secret_scan.py "
        "checks every log line of the functional suites); CloudWatch Logs encrypts at rest by default"
    ),
    ("CKV_AWS_23", "AWS::EC2::SecurityGroup.FunctionSecurityGroup"): (
        "every rule has a description: checkov takes the conditional REST rule (an Fn::If in the list of "
        "egress rules, ApplianceRestPort) for a rule without one; the rule it makes is described and the "
        "other branch is no rule (test_templates.py resolves both and checks each rule's Description)"
    ),
    ("CKV_AWS_119", "AWS::DynamoDB::Table.CoordinationTable"): (
        "the coordination table is encrypted at rest with the AWS managed key (SSEEnabled), not a "
        "customer managed one: it holds no secret, only paths, physical ids, host key fingerprints, "
        "HSM and partition serials and timestamps (tests/test_trust_boundaries.py reads it)"
    ),
}

# (path relative to the repository, bandit test id, the flagged line stripped): why it is accepted.
BANDIT_EXPLAINED = {
    ("functions/luna_ha/spec.py", "B506", "document = yaml.load(text, Loader=_GroupFileLoader)"): (
        "_GroupFileLoader subclasses yaml.SafeLoader (only plain scalars, lists and mappings)"
    ),
    ("functions/luna_ha/client/tools.py", "B404", "import subprocess"): (
        "the ASG member bootstrap runs the Luna client tools (vtl, lunacm)"
    ),
    ("functions/luna_ha/client/tools.py", "B603", "done = subprocess.run("): (
        "argv list, no shell; the tool paths come from the Luna client install and the arguments "
        "from the published group document, validated before use"
    ),
    ("functions/luna_ha/sim/faults.py", "B105", 'REST_CO_PASSWORD = "rest co password"'): (
        "the name of a simulated REST request a fault can target, not a password"
    ),
    ("functions/luna_ha/client/chrystoki.py", "B105", 'VIRTUAL_TOKEN = "VirtualToken"'): (
        "a Chrystoki.conf section name, not a password"
    ),
    ("lab/luna_ha_lab/localaws.py", "B105", 'ADMIN_SECRET = "luna/admin"'): (
        "the name of a secret of the local simulator, not its value"
    ),
    ("lab/luna_ha_lab/localaws.py", "B105", 'PARTITION_SECRET = "luna/partition"'): (
        "the name of a secret of the local simulator, not its value"
    ),
    ("lab/luna_ha_lab/localaws.py", "B105", '"AWS_SECRET_ACCESS_KEY": "local",'): (
        "a dummy credential for moto on 127.0.0.1 (the demo and simulator), never a real one"
    ),
    (
        "functions/luna_ha/coordination.py",
        "B311",
        "time.sleep(random.uniform(0, min(0.5, 0.02 * 2**attempt)))",
    ): (
        "jitter of a retry's backoff, so that contending runs do not meet again in step: timing, not "
        "a secret or a token"
    ),
    ("lab/luna_ha_lab/localaws.py", "B310", "urllib.request.urlopen(reset, timeout=10).close()"): (
        "POSTs to moto's reset URL of the simulator's own server on 127.0.0.1 (http://, built here)"
    ),
}
# bandit B101 (assert): every assert in the code narrows a type for mypy after a check that already
# ran (a regex that matched, a lazily set attribute); none is a runtime safety check. Listed by file.
BANDIT_ASSERTS = {
    "functions/luna_ha/appliance_run.py": 2,
    "functions/luna_ha/client/chrystoki.py": 3,
    "functions/luna_ha/rest.py": 3,
    "functions/luna_ha/sim/rest.py": 1,
    "functions/luna_ha/sim/appliance.py": 3,
    "functions/luna_ha/sim/server.py": 2,
    "functions/luna_ha/sim/terminal.py": 2,
    "lab/luna_ha_lab/cloudformation.py": 1,
}


def test_checkov_findings_are_all_explained() -> None:
    if not CHECKOV.exists():
        if os.environ.get(SKIP_CHECKOV) == "1":
            pytest.skip(f"checkov is not installed and {SKIP_CHECKOV}=1")
        pytest.fail("checkov is not installed: run `make .venv-checkov/.installed` (make test does)")
    env = {
        **os.environ,
        "BC_SKIP_MAPPING": "TRUE",
        "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false",
        "LOG_LEVEL": "WARNING",
    }
    for name in ("BC_API_KEY", "PRISMA_API_URL"):
        env.pop(name, None)
    done = subprocess.run(
        [
            *(str(CHECKOV), "--directory", "templates", "--framework", "cloudformation"),
            *("--skip-download", "--output", "json", "--quiet", "--compact"),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr[-2000:]
    reports = json.loads(done.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    found = set()
    for report in reports:
        assert report["summary"]["parsing_errors"] == 0, report["summary"]
        assert report["summary"]["resource_count"] > 10, "checkov did not read the templates"
        for check in report["results"]["failed_checks"]:
            found.add((check["check_id"], check["resource"]))
    unexplained = found - set(CHECKOV_EXPLAINED)
    gone = set(CHECKOV_EXPLAINED) - found
    assert not unexplained, f"checkov findings without an explanation: {sorted(unexplained)}"
    assert not gone, f"explained findings checkov no longer reports (delete them): {sorted(gone)}"


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_cfn_lint_with_informational_rules_finds_nothing(template: Path) -> None:
    # tests/templates/test_templates.py runs the default rules; these add the informational ones.
    matches = lint_file(template, ManualArgs(regions=["us-east-1", "eu-west-1"], include_checks=["I"]))
    assert [str(m) for m in matches] == []


def test_bandit_findings_are_all_explained() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bandit", "--recursive", *CODE, "--format", "json", "--quiet"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["errors"] == [], report["errors"]
    assert report["metrics"]["_totals"]["loc"] > 5000, "bandit did not read the code"
    found: set[tuple[str, str, str]] = set()
    asserts: dict[str, int] = {}
    for result in report["results"]:
        path = result["filename"].removeprefix("./")
        if result["test_id"] == "B101":
            asserts[path] = asserts.get(path, 0) + 1
            continue
        line = (REPO / path).read_text().splitlines()[result["line_number"] - 1].strip()
        code = line.split("  #", 1)[0].strip()
        found.add((path, result["test_id"], code))
    unexplained = found - set(BANDIT_EXPLAINED)
    gone = set(BANDIT_EXPLAINED) - found
    assert not unexplained, f"bandit findings without an explanation: {sorted(unexplained)}"
    assert not gone, f"explained findings bandit no longer reports (delete them): {sorted(gone)}"
    assert asserts == BANDIT_ASSERTS
    # the only suppression in the code, with its reason
    assert report["metrics"]["_totals"]["skipped_tests"] == 1
    nosec = [
        (str(p.relative_to(REPO)), n)
        for p in sorted(path for code in CODE for path in (REPO / code).rglob("*.py"))
        for n, text in enumerate(p.read_text().splitlines(), 1)
        if "nosec" in text
    ]
    assert [p for p, _ in nosec] == ["functions/luna_ha/scp.py"], nosec

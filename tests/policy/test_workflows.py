"""GitHub workflows: valid, pinned, least privilege, one update per stack at a time."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.release_runner import runner_label

WORKFLOWS = Path(__file__).resolve().parents[2] / ".github" / "workflows"
FILES = sorted(WORKFLOWS.glob("*.yml"))
# `uses: owner/repo@<40 hex> # vX.Y.Z`: the comment says which release the SHA is.
PINNED = re.compile(r"^\s*-?\s*uses:\s*[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+\s*$")
WRITE_SCOPES = {"id-token", "pull-requests", "contents"}


def _load(path: Path) -> dict[str, Any]:
    # PyYAML reads the key `on` as True (YAML 1.1); BaseLoader keeps every scalar a string.
    return yaml.load(path.read_text(), Loader=yaml.BaseLoader)


def _jobs() -> list[tuple[str, str, dict[str, Any]]]:
    return [(p.name, name, job) for p in FILES for name, job in _load(p)["jobs"].items()]


JOB_IDS = [f"{file}:{name}" for file, name, _ in _jobs()]


def _steps_using(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in job.get("steps", []) if s.get("uses", "").startswith(action + "@")]


def test_the_four_pipelines_exist():
    """Pull request, main (dev), promotion and release (prod) workflows are present."""
    assert [p.name for p in FILES] == [
        "deploy-dev.yml",
        "promote-prod.yml",
        "pull-request.yml",
        "release-prod.yml",
    ]


def test_zizmor_finds_nothing_of_medium_severity_or_above():
    """zizmor (offline audits: cache poisoning, credential persistence, injection, ...) is clean."""
    zizmor = Path(sys.executable).parent / "zizmor"
    result = subprocess.run(
        [str(zizmor), "--offline", "--min-severity", "medium", "--no-progress", str(WORKFLOWS)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflows_pass_the_workflow_schema_linter():
    """check-jsonschema validates each file against its vendored GitHub workflow schema."""
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows"]
        + [str(p) for p in FILES],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_commit_sha(path):
    """Third-party code runs at a reviewed commit, not a movable tag."""
    uses = [line for line in path.read_text().splitlines() if re.match(r"^\s*-?\s*uses:", line)]
    assert uses
    assert [line for line in uses if not PINNED.match(line)] == []


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_workflow_grants_nothing_by_default(path):
    """Top-level permissions are empty; each job asks for what it needs."""
    assert _load(path)["permissions"] == {}


@pytest.mark.parametrize(("file", "job_name", "job"), _jobs(), ids=JOB_IDS)
def test_every_job_has_explicit_permissions(file, job_name, job):
    """No job inherits the repository's default token permissions."""
    assert isinstance(job.get("permissions"), dict), f"{file}:{job_name}"
    assert job["permissions"].get("contents") in ("read", "write")


@pytest.mark.parametrize(("file", "job_name", "job"), _jobs(), ids=JOB_IDS)
def test_oidc_token_only_where_it_is_exchanged(file, job_name, job):
    """id-token: write exactly in jobs that exchange it (Azure or Pulumi Cloud login)."""
    logins = _steps_using(job, "azure/login")
    exchanges = logins + _steps_using(job, "pulumi/auth-actions")
    assert (job["permissions"].get("id-token") == "write") == bool(exchanges), f"{file}:{job_name}"
    for login in logins:
        assert set(login["with"]) == {"client-id", "tenant-id", "subscription-id"}
        assert all(v.startswith("${{ vars.") for v in login["with"].values())


def test_no_secrets_are_referenced():
    """Logins are federated (OIDC); workflows read no stored secrets."""
    for path in FILES:
        assert "secrets." not in path.read_text(), path.name


@pytest.mark.parametrize(("file", "job_name", "job"), _jobs(), ids=JOB_IDS)
def test_jobs_that_run_pulumi_hold_a_concurrency_group_per_stack(file, job_name, job):
    """A job running a Pulumi command is in a concurrency group that names its stack."""
    group = job.get("concurrency", {}).get("group", "")
    for step in _steps_using(job, "pulumi/actions"):
        if "command" in step.get("with", {}):
            stack = step["with"]["stack-name"].rsplit("/", 1)[-1]
            assert stack in group, f"{file}:{job_name}: group {group!r} for stack {stack}"
    if any(re.search(r"pulumi (up|preview)", s.get("run", "")) for s in job.get("steps", [])):
        assert "prod" in group, f"{file}:{job_name}: group {group!r}"


def test_stack_updates_are_never_cancelled_halfway():
    """`pulumi up` jobs queue behind one another (cancel-in-progress false)."""
    ups = [
        (job["concurrency"]["group"], job["concurrency"]["cancel-in-progress"])
        for _, _, job in _jobs()
        if any(s["with"].get("command") == "up" for s in _steps_using(job, "pulumi/actions"))
        or any("pulumi up" in s.get("run", "") for s in job.get("steps", []))
    ]
    assert sorted(ups) == [("pulumi-dev", "false"), ("pulumi-prod", "false")]


def test_pull_request_previews_both_stacks_with_policies_and_comments():
    """PRs preview dev and prod, comment the plan and run the policy pack."""
    jobs = _load(WORKFLOWS / "pull-request.yml")["jobs"]
    assert "make test" in str(jobs["test"]) or ".ci/run" in str(jobs["test"])
    assert jobs["preview"]["strategy"]["matrix"]["stack"] == ["dev", "prod"]
    (preview,) = _steps_using(jobs["preview"], "pulumi/actions")
    assert preview["with"]["command"] == "preview"
    assert preview["with"]["comment-on-pr"] == "true"
    assert preview["with"]["policyPacks"] == "policy"
    assert preview["with"]["policyPackConfigs"] == "policy/config.${{ matrix.stack }}.json"
    assert jobs["preview"]["permissions"] == {
        "contents": "read",
        "id-token": "write",
        "pull-requests": "write",
    }


def test_main_deploys_dev_then_smoke_tests_with_entra_tokens():
    """Main runs `pulumi up` on dev with the pack, then calls each endpoint with --aad."""
    workflow = _load(WORKFLOWS / "deploy-dev.yml")
    assert workflow["on"]["push"]["branches"] == ["main"]
    job = workflow["jobs"]["deploy"]
    (up,) = _steps_using(job, "pulumi/actions")
    assert (up["with"]["command"], up["with"]["policyPackConfigs"]) == (
        "up",
        "policy/config.dev.json",
    )
    names = [s.get("name", "") for s in job["steps"]]
    assert names.index("smoke tests of the deployed endpoints") > job["steps"].index(up)
    # The request and the answer's model come from the pattern table: no case per pattern.
    assert '-m delivery.smoke --url "$url" --pattern "$pattern" --aad' in job["steps"][-1]["run"]
    assert "case" not in job["steps"][-1]["run"]


def test_promotion_copies_assets_from_the_vnet_and_records_them_without_deploying():
    """Prod step 1: on the release runner, dry run then copy; no `pulumi up` in this workflow."""
    workflow = _load(WORKFLOWS / "promote-prod.yml")
    assert set(workflow["on"]) == {"workflow_dispatch"}  # no tag trigger: git decides releases
    job = workflow["jobs"]["promote"]
    assert job["runs-on"] == ["self-hosted", runner_label("prod")]
    runs = [s.get("run", "") for s in job["steps"]]
    dry = next(i for i, r in enumerate(runs) if "delivery.promote --from dev --to prod" in r)
    assert "--dry-run" in runs[dry]
    assert "--dry-run" not in runs[dry + 1]
    assert "delivery.promote --from dev --to prod" in runs[dry + 1]
    assert "pulumi up" not in (WORKFLOWS / "promote-prod.yml").read_text()


def test_images_are_promoted_only_from_the_prod_release_runner():
    """The import by digest runs as the identity that holds Container Registry Data Importer and
    Data Reader on prod's registry (and, through dev's `identity.promoters`, on dev's): the prod
    release runner's. No other job, hosted or not, runs a promotion."""
    promoting = [
        (file, name, job)
        for file, name, job in _jobs()
        for step in job.get("steps", [])
        if "delivery.promote" in step.get("run", "") and "--dry-run" not in step.get("run", "")
    ]
    assert [(file, name) for file, name, _ in promoting] == [("promote-prod.yml", "promote")]
    for _, _, job in promoting:
        assert job["runs-on"] == ["self-hosted", runner_label("prod")]
        assert job["permissions"] == {"contents": "read", "id-token": "write"}


def test_prod_approval_comes_after_the_plan_is_shown_and_applies_that_plan():
    """Prod step 2: plan (shown, saved) -> approval (environment prod) -> `pulumi up --plan`."""
    jobs = _load(WORKFLOWS / "release-prod.yml")["jobs"]
    plan, apply = jobs["plan"], jobs["apply"]
    assert plan["environment"] != "prod"  # no approval before there is a plan
    preview = next(s["run"] for s in plan["steps"] if "--save-plan" in s.get("run", ""))
    assert "pulumi preview" in preview
    assert "GITHUB_STEP_SUMMARY" in preview  # reviewers see the plan on the run page
    assert "--policy-pack policy" in preview
    (upload,) = _steps_using(plan, "actions/upload-artifact")
    assert apply["needs"] == "plan"
    assert apply["environment"] == "prod"
    (download,) = _steps_using(apply, "actions/download-artifact")
    assert download["with"]["name"] == upload["with"]["name"]
    up = next(s["run"] for s in apply["steps"] if "pulumi up" in s.get("run", ""))
    assert "--plan prod.plan.json" in up
    assert "--policy-pack-config policy/config.prod.json" in up
    release = jobs["release"]
    assert release["needs"] == "apply"
    assert "pulumi" not in str(release["concurrency"]["group"])  # not behind the stack lock
    runs = [s.get("run", "") for s in release["steps"]]
    assert any("python -m delivery release --stack" in r for r in runs)
    assert not any("pulumi up" in r for r in runs)
    abort = next(s for s in release["steps"] if "delivery abort" in s.get("run", ""))
    assert "cancelled()" in abort["if"]


def test_prod_jobs_run_on_the_release_runner_in_the_vnet():
    """Every job that reaches prod's private data plane runs on the stack's runner label."""
    for name in ("plan", "apply", "release"):
        job = _load(WORKFLOWS / "release-prod.yml")["jobs"][name]
        assert job["runs-on"] == ["self-hosted", runner_label("prod")], name


def test_pull_request_jobs_have_no_prod_write_access():
    """PR jobs use no prod environment, the Reader identity and a read-only Pulumi team token."""
    jobs = _load(WORKFLOWS / "pull-request.yml")["jobs"]
    for name, job in jobs.items():
        assert not str(job.get("environment", "")).startswith("prod"), name
        for auth in _steps_using(job, "pulumi/auth-actions"):
            assert auth["with"]["requested-token-type"].endswith(":team"), name
            assert auth["with"]["scope"] == "team:byom-preview", name
        for login in _steps_using(job, "azure/login"):
            assert login["with"]["client-id"] == "${{ vars.AZURE_PREVIEW_CLIENT_ID }}", name
    text = (WORKFLOWS / "pull-request.yml").read_text()
    assert "access_token:organization" not in text
    assert "pulumi up" not in text


def test_workflow_inputs_never_reach_shell_text():
    """`inputs.*` and `github.event.*` values go through env, not into `run:` scripts."""
    for _, job_name, job in _jobs():
        for step in job.get("steps", []):
            assert not re.search(r"\$\{\{\s*(inputs|github\.event)\.", step.get("run", "")), (
                job_name
            )


@pytest.mark.parametrize(("file", "job_name", "job"), _jobs(), ids=JOB_IDS)
def test_jobs_install_only_the_groups_they_run(file, job_name, job):
    """Only the test suite builds the whole development venv (`make test`); preview, plan,
    policy and release jobs install the infra group (tests/test_requirements.py proves it is
    enough) and the smoke requests add the client group."""
    runs = "\n".join(step.get("run", "") for step in job.get("steps", []))
    if ".ci/run" in runs:
        return
    assert not re.search(r"make venv(?![-\w])", runs), f"{file}:{job_name} installs every group"
    python = "\n".join(line for line in runs.splitlines() if ".venv/bin/python" in line)
    if python or _steps_using(job, "pulumi/actions"):
        assert "make venv-infra" in runs, f"{file}:{job_name}"
    if "scoring.cli" in python or "delivery.smoke" in python:
        assert "venv-client" in runs, f"{file}:{job_name}"

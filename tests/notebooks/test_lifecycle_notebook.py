"""The SDK v2 lifecycle notebook: committed clean, and runs top to bottom offline (in-memory
workspace, real inference server with the demo model)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "byom-lifecycle.ipynb"
# Appended to an in-memory copy after the notebook's own cells: reports what it did to the fake.
PROBE = """
import copy
import json
print("PROBE " + json.dumps({
    "traffic": {p: workspace.traffic(e) for p, e in ENDPOINTS.items()},
    "mutations": [list(m) for m in workspace.mutations],
    "invoked": [[e, d] for e, d, _ in workspace.invocations],
    "model": model.asset_id,
    "endpoints": ENDPOINTS,
    "server_up": server.healthy(),
}))
"""


def code_sources(notebook: nbformat.NotebookNode) -> list[str]:
    return [cell.source for cell in notebook.cells if cell.cell_type == "code"]


@pytest.fixture(scope="module")
def notebook() -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOK, as_version=4)


def test_notebook_is_valid_and_committed_without_outputs(notebook: nbformat.NotebookNode) -> None:
    """Valid nbformat 4; no outputs or execution counts in the repository."""
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code
    assert [(c.execution_count, c.outputs) for c in code] == [(None, [])] * len(code)


def test_notebook_pastes_no_targets_or_secrets(notebook: nbformat.NotebookNode) -> None:
    """Targets come from env vars or stack outputs: no ids, ARM paths, keys or tokens in cells."""
    source = "\n".join(code_sources(notebook))
    pasted = {
        "a GUID": r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
        "an ARM id": r"/subscriptions/",
        "a key or secret": r"(?i)(api_?key|primary_?key|secret|password|connection_?string)\s*=",
        "a bearer token": r"(?i)bearer\s+[a-z0-9]",
        "a scoring URI": r"inference\.ml\.azure\.com",
    }
    for what, pattern in pasted.items():
        assert not re.search(pattern, source), f"the notebook's code holds {what}"
    assert "DefaultAzureCredential" in "\n".join(c.source for c in notebook.cells)


def test_notebook_walks_the_lifecycle_through_the_project_modules(
    notebook: nbformat.NotebookNode,
) -> None:
    """Each step calls the delivery and scoring modules rather than re-implementing them."""
    source = "\n".join(code_sources(notebook))
    for call in (
        "AzureMLWorkspace.connect(",
        "package_model(",
        "register_model(",
        "register_environment(",
        "rollout(",
        "check_response(",
        ".generate(",
        ".analyze(",
        "render_report(",
    ):
        assert call in source, call
    assert "MLClient(" not in source


@pytest.mark.slow
def test_notebook_runs_top_to_bottom_offline(
    notebook: nbformat.NotebookNode, demo_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Offline mode: register, deploy both patterns, smoke-test, shift generate blue -> green,
    call both patterns; every cell runs without error (each within the 180 s cell timeout)."""
    for name in (
        "BYOM_STACK_OUTPUTS",
        "BYOM_SUBSCRIPTION_ID",
        "BYOM_RESOURCE_GROUP",
        "BYOM_WORKSPACE_NAME",
        "BYOM_ENDPOINT_GENERATE",
        "BYOM_ENDPOINT_ANALYZE",
        "BYOM_MODEL_SOURCE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BYOM_NOTEBOOK_MODE", "offline")
    monkeypatch.setenv("BYOM_STACK", "dev")
    monkeypatch.setenv("DEMO_MODEL_DIR", str(demo_model_dir))
    run = copy.deepcopy(notebook)
    run.cells.append(nbformat.v4.new_code_cell(PROBE))

    NotebookClient(
        run,
        timeout=180,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    ).execute()

    printed = "".join(
        output.get("text", "") for cell in run.cells for output in cell.get("outputs", [])
    )
    probe = json.loads(printed.split("PROBE ", 1)[1])
    generate = probe["endpoints"]["generate"]
    assert probe["traffic"] == {"generate": {"green": 100, "blue": 0}, "analyze": {"blue": 100}}
    assert probe["model"].startswith("azureml:smollm2-135m-instruct:")
    assert not probe["server_up"]
    kinds = [m[0] for m in probe["mutations"]]
    assert kinds.count("create_model") == kinds.count("create_environment") == 1
    assert kinds.count("create_or_update_deployment") == 3  # blue per pattern, then green
    assert ["set_traffic", generate, '{"blue": 90, "green": 10}', "{}"] in probe["mutations"]
    # Smoke tests reached each new deployment before it had traffic, and after the 10% step.
    assert probe["invoked"].count([generate, "green"]) >= 2
    assert "same spec again: changed=False" in printed
    assert "perplexity" in printed

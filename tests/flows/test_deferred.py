"""Flow modules import without Prefect; their flows and tasks become Prefect's own when first used as such."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
import flows.catalogue, flows.credentialing, flows.expiry, flows.questionnaire, flows.rescore_flows
import flows.structure_tasks
from flows.credentialing import credential_submission, ingest_submission
from flows.deferred import Deferred, prefect_object
from flows.structure_tasks import score_structure

out = {
    "prefect_after_import": "prefect" in sys.modules,
    "deferred": [isinstance(x, Deferred) for x in (credential_submission, ingest_submission, score_structure)],
    "fn_is_function": credential_submission.fn.__name__ == "credential_submission",
    "doc": credential_submission.__doc__ == credential_submission.fn.__doc__,
    "prefect_after_fn": "prefect" in sys.modules,
}
out["flow_name"] = credential_submission.name  # builds the flow, importing Prefect
out["prefect_after_name"] = "prefect" in sys.modules
from prefect import Flow, Task
from prefect.cache_policies import NO_CACHE

built = prefect_object(credential_submission)
out["is_flow"] = isinstance(built, Flow) and built is prefect_object(credential_submission)
out["task"] = isinstance(prefect_object(ingest_submission), Task) and ingest_submission.retries == 2
out["task_run_name"] = ingest_submission.task_run_name
out["no_cache"] = prefect_object(score_structure).cache_policy is NO_CACHE
out["with_options"] = isinstance(ingest_submission.with_options(task_run_name="x"), Task)
print(json.dumps(out))
"""


def test_flow_modules_import_without_prefect() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300, check=False, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out == {
        "prefect_after_import": False,
        "deferred": [True, True, True],
        "fn_is_function": True,
        "doc": True,
        "prefect_after_fn": False,
        "flow_name": "credential-submission",
        "prefect_after_name": True,
        "is_flow": True,
        "task": True,
        "task_run_name": "ingest[{provider_code} {case_code}]",
        "no_cache": True,
        "with_options": True,
    }

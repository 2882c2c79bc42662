"""Who may call each route: the one declared authorisation policy of the API and the pages.

The routes enforce it through the dependencies in :mod:`portal.deps` (and, for a resource of one provider, the
route's own check against the caller's provider). ``tests/portal/test_authorisation_matrix.py`` calls every route
in the app's route table as anonymous, centre A, centre B, commissioner and staff and checks the answers against
this table; a route missing from it fails that test.
"""

from __future__ import annotations

from enum import StrEnum


class Access(StrEnum):
    """Who is let in (a signed-in centre user always sees only its own provider's data)."""

    PUBLIC = "public"
    """Anyone, signed in or not."""
    SIGNED_IN = "signed_in"
    """Every signed-in user; what is shown is limited to what the user may see."""
    OWN_PROVIDER = "own_provider"
    """Staff and commissioners; a centre user only for its own provider's resource."""
    OWN_PROVIDER_STAFF = "own_provider_staff"
    """Staff; a centre user only for its own provider's resource; not commissioners (they change nothing)."""
    CENTRE = "centre"
    """Centre users only (their own provider's page)."""
    STAFF_OR_COMMISSIONER = "staff_or_commissioner"
    """QA staff and commissioners."""
    STAFF = "staff"
    """QA staff only."""


ROUTE_POLICY: dict[tuple[str, str], Access] = {
    # meta and sign-in
    ("GET", "/health"): Access.PUBLIC,
    ("GET", "/openapi.json"): Access.PUBLIC,
    ("GET", "/docs"): Access.PUBLIC,
    ("GET", "/sign-in"): Access.PUBLIC,
    ("POST", "/sign-in"): Access.PUBLIC,
    ("POST", "/sign-out"): Access.SIGNED_IN,
    ("GET", "/"): Access.SIGNED_IN,
    ("GET", "/api/v1/me"): Access.SIGNED_IN,
    # providers, credentials, trials
    ("GET", "/api/v1/providers"): Access.SIGNED_IN,
    ("GET", "/api/v1/providers/{provider_code}/credentials"): Access.OWN_PROVIDER,
    ("GET", "/api/v1/providers/{provider_code}/techniques"): Access.OWN_PROVIDER,
    ("GET", "/api/v1/trials"): Access.SIGNED_IN,
    ("GET", "/api/v1/trials/{trial_code}/eligible-providers"): Access.STAFF_OR_COMMISSIONER,
    ("GET", "/api/v1/trials/{trial_code}/providers"): Access.STAFF_OR_COMMISSIONER,
    ("GET", "/api/v1/credentials/expiring"): Access.STAFF_OR_COMMISSIONER,
    ("GET", "/api/v1/credentials/expiring/export"): Access.STAFF_OR_COMMISSIONER,
    ("GET", "/api/v1/credentials/matrix"): Access.STAFF_OR_COMMISSIONER,
    # cases, questionnaires, submissions
    ("GET", "/api/v1/cases"): Access.SIGNED_IN,
    ("GET", "/api/v1/cases/{case_code}/download"): Access.SIGNED_IN,
    ("GET", "/api/v1/questionnaires/{technique}"): Access.SIGNED_IN,
    ("POST", "/api/v1/questionnaires/{technique}"): Access.OWN_PROVIDER_STAFF,
    ("POST", "/api/v1/submissions"): Access.OWN_PROVIDER_STAFF,
    ("GET", "/api/v1/submissions"): Access.SIGNED_IN,
    ("GET", "/api/v1/submissions/{submission_id}"): Access.OWN_PROVIDER,
    ("POST", "/api/v1/submissions/{submission_id}/override"): Access.STAFF,
    ("GET", "/api/v1/submissions/{submission_id}/received"): Access.OWN_PROVIDER,
    ("POST", "/dicomweb/studies"): Access.OWN_PROVIDER_STAFF,
    # centre pages
    ("GET", "/centre"): Access.CENTRE,
    ("GET", "/cases"): Access.SIGNED_IN,
    ("GET", "/upload"): Access.CENTRE,
    ("GET", "/submissions"): Access.SIGNED_IN,
    ("GET", "/submissions/{submission_id}"): Access.OWN_PROVIDER,
    ("GET", "/questionnaire"): Access.CENTRE,
    ("GET", "/questionnaire/{technique}"): Access.CENTRE,
    ("POST", "/questionnaire/{technique}"): Access.CENTRE,
    # commissioner pages
    ("GET", "/network"): Access.STAFF_OR_COMMISSIONER,
    ("GET", "/trials"): Access.STAFF_OR_COMMISSIONER,
    ("GET", "/trials/{trial_code}"): Access.STAFF_OR_COMMISSIONER,
    ("GET", "/expiring"): Access.STAFF_OR_COMMISSIONER,
    ("GET", "/providers/{provider_code}"): Access.STAFF_OR_COMMISSIONER,
    # reports and the national view
    ("GET", "/submissions/{submission_id}/report"): Access.OWN_PROVIDER,
    ("GET", "/submissions/{submission_id}/report.pdf"): Access.OWN_PROVIDER,
    ("GET", "/submissions/{submission_id}/report/figures/{key}/{name}"): Access.OWN_PROVIDER,
    ("GET", "/national"): Access.STAFF_OR_COMMISSIONER,
    ("GET", "/api/v1/national"): Access.SIGNED_IN,
    # flows started by staff
    ("GET", "/api/v1/flows"): Access.STAFF,
    ("POST", "/api/v1/flows/{name}/runs"): Access.STAFF,
    ("GET", "/api/v1/flows/runs/{run_id}"): Access.STAFF,
    # QA staff: review, queue, audit, users and tokens
    ("GET", "/staff/queue"): Access.STAFF,
    ("GET", "/submissions/{submission_id}/review"): Access.STAFF,
    ("POST", "/submissions/{submission_id}/review/override"): Access.STAFF,
    ("POST", "/submissions/{submission_id}/review/mapping/confirm"): Access.STAFF,
    ("POST", "/submissions/{submission_id}/review/mapping/flag"): Access.STAFF,
    ("GET", "/api/v1/submissions/{submission_id}/mapping"): Access.STAFF,
    ("POST", "/api/v1/submissions/{submission_id}/mapping/confirm"): Access.STAFF,
    ("POST", "/api/v1/submissions/{submission_id}/mapping/flags"): Access.STAFF,
    ("GET", "/staff/audit"): Access.STAFF,
    ("GET", "/api/v1/audit"): Access.STAFF,
    ("GET", "/api/v1/audit.csv"): Access.STAFF,
    ("GET", "/staff/flows"): Access.STAFF,
    ("POST", "/staff/flows/{name}/runs"): Access.STAFF,
    ("GET", "/staff/flows/runs/{run_id}"): Access.STAFF,
    ("GET", "/staff/users"): Access.STAFF,
    ("POST", "/staff/users"): Access.STAFF,
    ("GET", "/staff/users/{user_id}"): Access.STAFF,
    ("POST", "/staff/users/{user_id}/deactivate"): Access.STAFF,
    ("POST", "/staff/users/{user_id}/reactivate"): Access.STAFF,
    ("POST", "/staff/users/{user_id}/tokens"): Access.STAFF,
    ("POST", "/staff/tokens/{token_id}/revoke"): Access.STAFF,
    ("GET", "/api/v1/users"): Access.STAFF,
    ("POST", "/api/v1/users"): Access.STAFF,
    ("POST", "/api/v1/users/{user_id}/deactivate"): Access.STAFF,
    ("POST", "/api/v1/users/{user_id}/reactivate"): Access.STAFF,
    ("GET", "/api/v1/tokens"): Access.STAFF,
    ("POST", "/api/v1/tokens"): Access.STAFF,
    ("POST", "/api/v1/tokens/{token_id}/revoke"): Access.STAFF,
}
"""(method, path template) → who may call it."""

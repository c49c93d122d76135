"""The OpenAPI description tells the truth: schemathesis, with every check, finds no mismatch.

Every operation of `/openapi.json` is called with inputs generated from its own schema, valid
and invalid, with the boundary values of each constraint (the coverage phase) and a bounded
number of random examples (the fuzzing phase). Every check runs: no 5xx; every answer's status,
media type, headers and body are documented; input the schema allows is accepted (a 4xx only
when the state says no: not found, a conflict, a role that may not); input the schema forbids
is refused; authentication is not ignored. So a constraint enforced by the code but missing
from the schema (or the reverse) fails here, as does an undocumented status or media type.

Residents' own routes (`/api/v1/me...`) are called with a resident's token, everything else
with the operator token (an administrator). The run is deterministic (a fixed seed, Hypothesis
derandomised) on a fresh SQLite database.
"""

from __future__ import annotations

import functools
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import hypothesis
import pytest
import schemathesis
from fastapi.testclient import TestClient
from pydantic import SecretStr
from schemathesis.specs.openapi.checks import positive_data_acceptance

from cityshare.api.app import create_app
from cityshare.bootstrap import bootstrap
from cityshare.kernel.clock import ManualClock
from cityshare.settings import Settings
from conftest import LOG_KEY, OPERATOR_TOKEN
from identity_helpers import ISSUER_KEY, assertion, new_key

#: Random examples per operation, on top of the coverage phase's boundary cases.
MAX_EXAMPLES = 10
SEED = 20261124

# The schema is loaded when the module is collected (schemathesis makes one test per operation
# from it), so the platform under test is made here, on a SQLite file in a folder removed at exit.
_FOLDER = tempfile.TemporaryDirectory(prefix="cityshare-openapi-")
PLATFORM = bootstrap(
    Settings(
        database_url=f"sqlite:///{Path(_FOLDER.name) / 'cityshare.db'}",
        operator_token=SecretStr(OPERATOR_TOKEN),
        log_key=SecretStr(LOG_KEY.skey),
        issuer_keys=ISSUER_KEY.verifier.vkey,
        max_batch=1000,
    ),
    clock=ManualClock(),
)
APP = create_app(PLATFORM, run_jobs=False)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP, config=schemathesis.Config(seed=SEED))


@pytest.fixture(scope="module", autouse=True)
def _close_platform() -> Iterator[None]:
    yield
    PLATFORM.close()


#: Refusals a schema cannot state, by operation: they depend on what is stored (the ledger's
#: accounts and balances, the log's size), on the clock, on a signature, a check digit or on
#: several fields together. Each is a 422 with its own code and documented in the operation's
#: description; any other refusal of schema-valid input (above all pydantic's
#: `invalid_request`) means the schema does not say what the code checks, and fails the test.
REFUSED_BY_RULES: dict[str, frozenset[str]] = {
    # The ledger's rules (TigerBeetle's result codes): accounts that exist, balances, holds.
    "POST /api/v1/accounts": frozenset({"accounts_rejected"}),
    "POST /api/v1/transfers": frozenset({"transfers_rejected"}),
    # Ranges within the log as it stands, and one bound before the other.
    "GET /api/v1/log/entries": frozenset({"out_of_range"}),
    "GET /api/v1/log/proof/inclusion": frozenset({"out_of_range"}),
    "GET /api/v1/log/proof/consistency": frozenset({"out_of_range"}),
    # Signatures: a witness's, an issuer's.
    "POST /api/v1/log/cosignatures": frozenset({"cosignature_rejected"}),
    "POST /api/v1/residents": frozenset({"assertion_invalid"}),
    # Which purposes a role may hold, in which domain, for which organisation.
    "POST /api/v1/credentials": frozenset({"invalid_grant"}),
    # A VID's Verhoeff check digit.
    "POST /api/v1/me/shares/transfers": frozenset({"invalid_vid"}),
    # Only a community asset has shares (the organisation exists, of another kind).
    "GET /api/v1/organisations/{org_id}/shares": frozenset({"not_community"}),
    "POST /api/v1/organisations/{org_id}/shares": frozenset({"invalid_vid", "not_community"}),
    # A settlement boundary of the tariff's timezone, of a community asset.
    "POST /api/v1/organisations/{org_id}/distributions": frozenset(
        {"invalid_period_end", "not_community"}
    ),
    # Now or later, at most 400 days ahead; only a provider or a community asset sells
    # energy (the organisation exists, of another kind).
    "PUT /api/v1/organisations/{org_id}/price-list": frozenset(
        {"retroactive_price", "invalid_effective_from", "not_a_provider"}
    ),
    "GET /api/v1/organisations/{org_id}/price-list": frozenset({"not_a_provider"}),
}


def _holds_a_float(value: object) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(_holds_a_float(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_a_float(v) for v in value)
    return False


@schemathesis.check
def positive_data_acceptance_but_for_rules_of_state(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> bool | None:
    """Schema-valid input is accepted, or refused by a rule of `REFUSED_BY_RULES`, or holds an
    integer spelled as a float (`1.0`: JSON Schema counts it an integer, the API refuses it,
    as its description says; no schema of the API has a `number` that is not an integer)."""
    if response.status_code == 422:
        code = json.loads(response.content)["error"]["code"]
        if code in REFUSED_BY_RULES.get(case.operation.label, frozenset()):
            return None
        if _holds_a_float(case.body):
            return None
    return positive_data_acceptance(ctx, response, case)


@functools.cache
def resident_token() -> str:
    """A resident with a meter, so that routes about one's own devices have something to find."""
    with TestClient(APP) as client:
        enrolled = client.post("/api/v1/residents", json={"assertion": assertion(PLATFORM, "asha")})
        assert enrolled.status_code == 201, enrolled.text
        token: str = enrolled.json()["token"]
        meter = client.post(
            "/api/v1/me/devices",
            headers={"Authorization": f"Bearer {token}"},
            json={"kind": "meter", "public_key": new_key()[1]},
        )
        assert meter.status_code == 201, meter.text
    return token


@schema.auth(refresh_interval=None)
class Tokens:
    """A resident's token for the resident's own routes, the operator token for the others
    (schemathesis leaves it out itself where it checks that a route needs one)."""

    def get(self, case: schemathesis.Case, ctx: schemathesis.AuthContext) -> str:
        return resident_token() if case.operation.path.startswith("/api/v1/me") else OPERATOR_TOKEN

    def set(self, case: schemathesis.Case, data: str, ctx: schemathesis.AuthContext) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@schema.parametrize()
@hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)
def test_every_operation_behaves_as_its_schema_says(case: schemathesis.Case) -> None:
    case.call_and_validate(
        excluded_checks=[positive_data_acceptance],
        additional_checks=[positive_data_acceptance_but_for_rules_of_state],
    )


def test_a_405_lists_every_method_of_the_path_in_allow() -> None:
    with TestClient(APP) as client:
        r = client.delete("/api/v1/accounts", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, POST"
    assert r.json()["error"]["code"] == "method_not_allowed"


def test_integer_bounds_are_published_exactly() -> None:
    """2^63-1 is not 9.223372036854776e+18 (which JSON Schema reads as 9223372036854776000)."""
    spec = APP.openapi()
    transfer = spec["components"]["schemas"]["TransferIn"]["properties"]
    assert transfer["amount"]["maximum"] == 2**63 - 1
    assert isinstance(transfer["amount"]["maximum"], int)
    assert transfer["user_data"]["minimum"] == -(2**63)


def test_schema_names_do_not_depend_on_where_the_code_lives() -> None:
    """Two models of one name would be published under their module paths
    (`cityshare__api__schemas__StatementOut`), which a move of the code would rename for every
    generated client: each published model has a name of its own."""
    names = APP.openapi()["components"]["schemas"]
    assert not [n for n in names if n.startswith("cityshare__")]
    assert {"StatementOut", "MonthlyStatementOut"} <= set(names)

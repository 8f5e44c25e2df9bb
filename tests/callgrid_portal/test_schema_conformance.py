"""Schemathesis against the app in process: every answer conforms to the OpenAPI document.

Each operation gets a bounded number of generated requests, signed in as an admin (who may
call everything), sent through the WSGI application (no server, no network). Every response
must have a status code the schema documents for it, the content type it declares and a body
that matches its schema; a 5xx fails too.

Left out: ``POST /route/`` and ``POST /buyers/{id}/test-bid/``, which send bids (the route's
and the test bid's own tests cover them against the simulator), and the schema and docs
views themselves.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from knox.models import AuthToken
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.factories import BidLogFactory, BuyerFactory, CallFactory

SKIPPED = {
    ("POST", "/api/v1/route/"),
    ("POST", "/api/v1/buyers/{id}/test-bid/"),
    ("GET", "/api/v1/schema/"),
    ("GET", "/api/v1/docs/"),
}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES_PER_OPERATION = 15


def _document() -> dict[str, Any]:
    document = SchemaGenerator().get_schema(request=None, public=True)
    document["servers"] = [{"url": "http://testserver"}]
    for path, item in document["paths"].items():
        for method in list(item):
            if (method.upper(), path) in SKIPPED:
                del item[method]
    document["paths"] = {path: item for path, item in document["paths"].items() if item}
    return document


# Generated examples only (schemathesis's coverage phase alone sends hundreds of requests per
# operation); the bad-input sweeps and the property tests cover the edges.
CONFIG = SchemathesisConfig.from_dict({"phases": {"coverage": {"enabled": False}}})
schema = schemathesis.openapi.from_dict(_document(), config=CONFIG)


@pytest.fixture
def seeded(db, settings, simulator):
    """An admin's token, and a buyer, a bid and routed and unrouted calls to read."""
    from django.contrib.auth.models import User

    # A buyer created without an endpoint points at the simulator, never at CallGrid.
    settings.CALLGRID_DEFAULT_ENDPOINT = simulator.endpoint
    settings.CALLGRID_ENDPOINT_ALLOWLIST = ["127.0.0.1"]
    buyer = BuyerFactory(endpoint_url=simulator.endpoint)
    BidLogFactory(buyer=buyer)
    CallFactory(routed=True, winner=buyer, bid_amount="20.00", destination="13035550000")
    CallFactory(routed=False)
    admin = User.objects.create_superuser("schemathesis", "s@example.com", "x")
    _, token = AuthToken.objects.create(admin)
    # The app answers inside this test's transaction, as Django's test client does: a
    # request's end must not close the connection that holds it.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    # Built after the settings above: middleware reads its settings when it is created.
    yield get_wsgi_application(), {"Authorization": f"Token {token}"}
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
@pytest.mark.django_db
def test_every_answer_conforms_to_the_schema(case, seeded):
    app, headers = seeded
    case.call_and_validate(app=app, headers=headers, checks=CHECKS)

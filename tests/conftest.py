"""Shared fixtures: personas for each role and settings that let buyers point at the simulator."""

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from callgrid_portal.simulator import Simulator
from tests.factories import UserFactory


@pytest.fixture(autouse=True)
def _callgrid_test_settings(settings):
    """Allow the local simulator as a buyer endpoint, as the embedded default does."""
    settings.CALLGRID_ENDPOINT_ALLOWLIST = ["bid.callgrid.com", "127.0.0.1", "localhost"]
    settings.CALLGRID_INSECURE_HOSTS = ["127.0.0.1", "localhost"]
    settings.SECURE_SSL_REDIRECT = False


@pytest.fixture(scope="session")
def _simulator_server():
    """One CallGrid simulator per test session (per xdist worker), on a free port."""
    server = Simulator().start()
    yield server
    server.stop()


@pytest.fixture
def simulator(_simulator_server) -> Simulator:
    """The running simulator, reset so each test starts with no requests and default grids."""
    _simulator_server.reset()
    return _simulator_server


# Personas, as healthchecks names its test users: one per role.
@pytest.fixture
def alice(db) -> User:
    """Alice is a viewer: she reads everything and changes nothing."""
    return UserFactory(username="alice", role="viewer")


@pytest.fixture
def bob(db) -> User:
    """Bob is an operator: he edits buyers and sends test bids."""
    return UserFactory(username="bob", role="operator")


@pytest.fixture
def charlie(db) -> User:
    """Charlie is an admin."""
    return UserFactory(username="charlie", role="admin")


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


def _client_for(user: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def viewer_api(alice) -> APIClient:
    return _client_for(alice)


@pytest.fixture
def operator_api(bob) -> APIClient:
    return _client_for(bob)


@pytest.fixture
def admin_api(charlie) -> APIClient:
    return _client_for(charlie)

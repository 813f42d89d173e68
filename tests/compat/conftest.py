"""The cluster the in-`make test` compat suites run through (one per module)."""

from __future__ import annotations

import uuid

import pytest

from tests.integration.cluster import Cluster


@pytest.fixture(scope="module")
def cluster(zookeeper, mariadbs, backend_credentials, tmp_path_factory):
    c = Cluster(zookeeper, mariadbs, backend_credentials, tmp_path_factory.mktemp("compat"), f"/compat-{uuid.uuid4().hex[:8]}")
    try:
        c.start(users={"root": ""})
        yield c
    finally:
        c.stop()

"""pytest plugin: the Knooppunt container images, built from this tree (`images` marker).

Fixture ``images`` (session): runs tools/images/build.sh (a no-op when the cached images
match the sources; `./dev test` builds them before pytest starts) and gives the references.
Without podman/runc or root the test fails when ``$CI`` is set and is skipped otherwise.
"""

from __future__ import annotations

import os

import pytest

from tests.images import podman


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def images() -> podman.Images:
    reason = podman.available()
    if reason is not None:
        if in_ci():
            pytest.fail(f"{reason} (CI is set: the image tests must run)", pytrace=False)
        pytest.skip(reason)
    return podman.build()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "images" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.images)

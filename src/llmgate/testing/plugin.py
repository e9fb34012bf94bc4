"""The pytest plugin: fixtures that start a real llmgate for your tests.

- ``llmgate_config`` (module scope): override it to give the configuration the ``llmgate``
  fixture starts with: a dict in APISIX's standalone format, or the path of an
  ``apisix.yaml``/``.json``; ``${{LLMGATE_FAKE_UPSTREAM}}`` in it is the fake upstream's
  ``host:port``.  None (the default): an empty configuration.
- ``llmgate`` (module scope): one gateway for the tests of a module, stopped after the last.
- ``llmgate_factory``: ``llmgate_factory(config, **options)`` starts more gateways inside one
  test (``standalone=True``, ``env=``, ``serve_args=``, ``fake_args=``), all stopped after it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from llmgate.testing.gateway import Config, Gateway, start_gateway


@pytest.fixture(scope="module")
def llmgate_config() -> Config:
    """The ``llmgate`` fixture's configuration; override it in your module or conftest.py."""
    return None


@pytest.fixture(scope="module")
def llmgate(llmgate_config: Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A running gateway with ``llmgate_config``, shared by the tests of a module."""
    with start_gateway(llmgate_config, workdir=tmp_path_factory.mktemp("llmgate")) as gateway:
        yield gateway


@pytest.fixture
def llmgate_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., Gateway]]:
    """Start gateways with their own configuration inside a test; all stopped at its end."""
    with contextlib.ExitStack() as stack:

        def start(config: Config = None, **options: Any) -> Gateway:
            workdir = tmp_path_factory.mktemp("llmgate")
            return stack.enter_context(start_gateway(config, workdir=workdir, **options))

        yield start

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # tests/zoo.py

from zoo import FLOAT_ZOO, ZOO  # noqa: E402


@pytest.fixture(params=ZOO, ids=lambda case: case.id)
def zoo_case(request):
    """Every model of the zoo (float and integer inputs)."""
    return request.param


@pytest.fixture(params=FLOAT_ZOO, ids=lambda case: case.id)
def float_zoo_case(request):
    """The models of the zoo that take floating-point inputs."""
    return request.param

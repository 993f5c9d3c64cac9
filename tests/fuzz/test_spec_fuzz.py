"""The fault-spec and chaos-schedule parsers under generated hostile text: a clear error or a result,
never another exception (each was a 500 from the management API)."""

import random

import pytest

from cases import chaos_text, fault_spec, seeds
from fastmock.faults import FaultSpecError, parse_fault_spec
from fastmock.fleet.management.chaos import ChaosError, parse_schedule

pytestmark = pytest.mark.filterwarnings("ignore::ruamel.yaml.error.ReusedAnchorWarning")


def test_fault_specs_parse_or_say_where():
    for seed in seeds("fault specs", 0.05):
        spec = fault_spec(random.Random(seed))
        try:
            parse_fault_spec(spec)
        except FaultSpecError as exc:
            assert 1 <= exc.position <= len(spec) + 1, f"seed {seed}: {spec!r}: {exc}"


def test_chaos_schedules_parse_or_say_why():
    for seed in seeds("chaos schedules", 0.1):
        text = chaos_text(random.Random(seed))
        try:
            parse_schedule(text, 10000, 10999)
        except ChaosError:
            pass

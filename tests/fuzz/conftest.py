"""Hypothesis budgets for the fuzzers, one knob for both: max_examples per test (per API
operation for schemathesis; five times it for the cheap ONNX service tests).

"ci", the default (`make test`): 15 examples, derandomized and without an example
database, so that a run is short and the same every time. "fuzz" (`make fuzz`, or
FUZZ_PROFILE=fuzz): 200 examples, random, the schemathesis coverage phase on, and
failures kept under .hypothesis/ to be replayed first next time. FUZZ_EXAMPLES overrides
the count of either. Profiles are global to a pytest run: a test elsewhere that takes up
Hypothesis gets the same one unless it sets its own settings."""
import os

from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

# The fixtures (tenants, clients, storage) are set up once per test on purpose: every example
# runs against them in the test's transaction (an ONNX upload in a savepoint of its own).
# Requests through the whole Django stack are slow by Hypothesis's measure.
SUPPRESSED = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]

settings.register_profile(
    "ci", max_examples=int(os.environ.get("FUZZ_EXAMPLES", 15)), derandomize=True, database=None, deadline=None,
    suppress_health_check=SUPPRESSED,
)
settings.register_profile(
    "fuzz", max_examples=int(os.environ.get("FUZZ_EXAMPLES", 200)), derandomize=False, deadline=None,
    database=DirectoryBasedExampleDatabase(".hypothesis/examples"), suppress_health_check=SUPPRESSED,
    print_blob=True,
)
settings.load_profile(os.environ.get("FUZZ_PROFILE", "ci"))

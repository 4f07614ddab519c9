"""Suite-wide fixtures: AWS calls never leave the machine, and every test gets fake credentials."""

import copy
import gc
import os
import sys
import warnings

import pytest
from moto import mock_aws  # imported before any boto3 session exists (awsclients reuses one)
from moto.core import config as moto_config

from tests.moto_keys import pool_moto_keys

for _name, _value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "eu-west-1",
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",  # moto answers DynamoDB Streams regionally only
}.items():
    os.environ[_name] = _value
os.environ.pop("AWS_ENDPOINT_URL", None)
# With PYTHONDONTWRITEBYTECODE set (this machine's image sets it), each of the suite's ~40 Python
# processes (two workers, the e2e demo's services and cameras, the settings and schema checks'
# manage.py runs) compiled the project again, and each worker rewrote the asserts of all ~480
# test modules again: ~17 s of CPU per worker's collection alone. The suite writes its bytecode
# (__pycache__/, ignored by git) and later processes and runs read it back.
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
os.environ.pop("AWS_PROFILE", None)
# moto drops boto3's default Session at each mock's start, and a new Session parses botocore's
# service models again: ~0.1-0.3 s per client a test builds with boto3.client(), about a fifth
# of the suite's CPU time. The credentials are fake either way, so every mock keeps the one.
moto_config.default_user_config["core"]["reset_boto3_session"] = False
# moto's IoT and KMS make an RSA key per certificate and per key (~50 ms each): a few, reused.
pool_moto_keys()

# The longest files first: with pytest-xdist (`make test`, whole files to each worker, in this
# order: --no-loadscope-reorder) they start at once, beside the rest, instead of last and alone.
# The order is the one measured (the files of 3 s and more in a quiet `make test`, 2026-12-02
# 17:52, docs/benchmarks.md); the browser files are long where Chromium is installed.
LONGEST_FIRST = (
    "tests/e2e/",
    "tests/emotions/test_report_page_browser.py",
    "tests/edge_package/test_small_faces.py",
    "tests/festival/test_organizer_pages_browser.py",
    "tests/emotions/test_analysis_concurrency.py",
    "tests/edge_package/test_pipeline.py",
    "tests/emotions/test_comparison_page_browser.py",
    "tests/infra/test_deploy.py",
    "tests/edge_package/test_runtimes.py",
    "tests/emotions/test_report_charts.py",
    "tests/operations/test_vibe_components_browser.py",
    "tests/edge_package/test_crowd_signals.py",
    "tests/festival/test_celery_worker.py",
    "tests/devices/test_greengrass_lifecycle.py",
    "tests/operations/test_dashboard_browser.py",
    "tests/emotions/test_pipeline_end_to_end.py",
    "tests/festival/test_settings_guard.py",
    "tests/festival/test_browsable_api_setting.py",
    "tests/devices/test_input_health.py",
    "tests/emotions/test_ingest.py",
    "tests/festival/test_cross_tenant_admin_and_pages.py",
    "tests/festival/test_settings_env.py",
    "tests/emotions/test_comparison_aggregates.py",
    "tests/festival/test_cross_tenant_routes.py",
    "tests/operations/test_closeout.py",
    "tests/devices/test_telemetry_throttle_parallel.py",
    "tests/infra/test_real_deployment.py",
    "tests/edge_package/test_detect.py",
    "tests/emotions/test_privacy_differencing.py",
    "tests/devices/test_deployments.py",
    "tests/detectors/test_labelled_clips.py",
    "tests/devices/test_health.py",
    "tests/devices/test_registration.py",
)


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        path = item.nodeid.replace("\\", "/")
        for index, prefix in enumerate(LONGEST_FIRST):
            if path.startswith(prefix):
                return index
        return len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within a file, and of the other files, is kept


# Python's cyclic garbage collector ran ~7,000 times a worker and cost ~7 s of CPU a worker
# (~22 s of the suite's ~300 s, measured with gc.callbacks): a worker holds about a million
# objects (Django, botocore's models, moto's backends, 1,600 collected tests), and the default
# threshold (a young collection every 700 allocations) walks the survivors again and again.
# After collection, what exists is frozen (never walked again) and young collections run every
# 20,000 allocations: ~900 a worker, ~2 s. Garbage is still collected, a little later.
GC_YOUNG_THRESHOLD = 20_000


def pytest_collection_finish(session):
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


@pytest.fixture
def mid_minute():
    """The throttle's clock fixed in the middle of a minute: a test counting a per-minute limit
    never sees its window turn between two requests (a slow run crossed one, 2026-12-03)."""
    from unittest import mock

    from festival.throttling import FixedWindowRateThrottle

    with mock.patch.object(FixedWindowRateThrottle, "timer", return_value=1_795_000_030.0):
        yield


@pytest.fixture
def aws_region() -> str:
    return os.environ["AWS_DEFAULT_REGION"]


@pytest.fixture
def moto_resources():
    """What a suite's tests find in moto when it starts; a suite's conftest overrides this
    (tests/devices: the artifacts bucket and the DeepLens role; tests/detectors: the bucket and
    the gate's settings). Here: nothing."""


@pytest.fixture
def moto_aws(request):
    """Every AWS call of the test goes to an in-process moto, fresh for each test, holding the
    suite's `moto_resources`. The one definition of this fixture for every suite."""
    with warnings.catch_warnings():
        # moto warns for each CloudFormation resource type it skips (policies, IoT rule, ...)
        warnings.filterwarnings("ignore", category=UserWarning, module="moto")
        with mock_aws():
            request.getfixturevalue("moto_resources")
            yield


@pytest.fixture
def two_worlds(db):
    """Two organizations side by side: `ours` is the requester's, `theirs` must stay invisible."""
    from tests.factories import make_world

    return make_world("ours"), make_world("theirs", public=False)


def _tenant_worlds():
    from tests.factories import add_tenant_rows, make_world

    return add_tenant_rows(make_world("ours")), add_tenant_rows(make_world("theirs", public=False))


@pytest.fixture
def worlds(db):
    """Two worlds with a row of every tenant-owned model (tests.factories.add_tenant_rows): the
    generated cross-tenant checks of the API, the admin and the pages."""
    return _tenant_worlds()


@pytest.fixture(scope="module")
def worlds_once(django_db_setup, django_db_blocker):
    """`worlds`, written once for a whole module inside a transaction that is rolled back when
    the module ends, as Django's TestCase.setUpTestData does for a class: each test's own
    transaction is a savepoint inside it, so what a test writes is still undone after it. For
    the generated cross-tenant matrices (hundreds of cases over the same two worlds); a module
    that uses it must hold no transactional test. Tests take it through `worlds_copy`."""
    from django.db import transaction
    from django.test import override_settings

    with django_db_blocker.unblock():
        atomic = transaction.atomic()
        atomic.__enter__()
        try:  # the test hasher, as fast_password_hashing gives each test (this runs before it)
            with override_settings(PASSWORD_HASHERS=FAST_PASSWORD_HASHERS):
                built = _tenant_worlds()
        except BaseException:
            atomic.__exit__(*sys.exc_info())
            raise
    yield built
    with django_db_blocker.unblock():
        transaction.set_rollback(True)
        atomic.__exit__(None, None, None)


@pytest.fixture
def worlds_copy(worlds_once, db):
    """The module's `worlds_once` for one test: its own copies of the rows' Python objects (as
    setUpTestData's TestData gives each test), the rows as the module wrote them."""
    return copy.deepcopy(worlds_once)


@pytest.fixture
def api_client():
    from rest_framework.test import APIClient

    return APIClient()


FAST_PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """PBKDF2 costs ~0.3 s a user; tests create dozens. Production keeps the default hasher."""
    settings.PASSWORD_HASHERS = FAST_PASSWORD_HASHERS


@pytest.fixture(autouse=True)
def isolated_cache(settings):
    """Each test starts with an empty, private cache (the file cache is shared by processes),
    and without what a web process keeps in memory (live ranking memo, throttle tallies)."""
    from django.core.cache import cache

    from emotions.live_cache import forget_memoized_live_entries
    from festival.throttling import process_counter

    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    cache.clear()
    forget_memoized_live_entries()
    process_counter.forget()
    yield
    cache.clear()
    forget_memoized_live_entries()
    process_counter.forget()


@pytest.fixture(scope="module")
def chromium():
    """One headless Chromium for a module's page tests (a launch costs a second or two); each
    test opens its own context (cookies, viewport) and closes it. Playwright's sync API leaves
    its event loop marked as running in this thread while it is started, so the module's ORM
    calls run with DJANGO_ALLOW_ASYNC_UNSAFE, as each page test did before."""
    from tests.browser import launch_chromium, sync_api  # skips where there is no Chromium

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_api.sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            yield browser
            browser.close()


@pytest.fixture(scope="session")
def _migrations_from_template():
    """Armed while pytest-django's django_db_setup (below) builds the test databases, only."""
    from tests.db_template import arm_migrations_from_template

    disarm = arm_migrations_from_template()
    yield disarm
    disarm()


@pytest.fixture(scope="session")
def django_db_setup(_migrations_from_template, django_db_setup, django_db_blocker):
    """pytest-django's own, with SQLite's in-memory test database copied from a template that
    one worker migrated (tests/db_template.py) instead of migrated again by every worker; its
    transactional tests' flushes put back post_migrate's rows instead of emitting it again."""
    from tests.db_template import flushes_keep_post_migrate_rows

    _migrations_from_template()
    with django_db_blocker.unblock():
        flushes_keep_post_migrate_rows()


@pytest.fixture(scope="session")
def django_db_modify_db_settings_xdist_suffix(request):
    """Each xdist worker's own test database: PostgreSQL's named test_<name>_gwN, as pytest-django
    names it; SQLite's in memory, private to the process. (pytest-django's own fixture takes
    our SQLite backend, festival.sqlite3, for a server and names a file test_<path>_gwN.)"""
    from django.conf import settings

    suffix = getattr(request.config, "workerinput", {}).get("workerid")
    for db in settings.DATABASES.values():
        test = db.setdefault("TEST", {})
        if db["ENGINE"].endswith("sqlite3"):
            test.setdefault("NAME", ":memory:")
        elif suffix:
            test["NAME"] = f"{test.get('NAME') or 'test_' + db['NAME']}_{suffix}"

import threading
import time

from commands.checks import Check, Shared, Skip, passed, run_checks
from commands.report import Status
from integrations.errors import UpstreamError


def run(*checks, timeout_s=2.0, on_result=lambda _: None):
    return {r.name: r for r in run_checks(list(checks), max_workers=8, timeout_s=timeout_s, on_result=on_result)}


def boom():
    raise RuntimeError("kaput")


def upstream():
    raise UpstreamError("shopify", "GET shop.json", "token rejected", status_code=401)


def skip():
    raise Skip("no credentials")


def test_each_way_a_check_can_end():
    results = run(Check("ok", lambda: passed("fine")), Check("boom", boom), Check("up", upstream), Check("skip", skip))
    assert results["ok"].status == Status.PASS
    assert results["boom"].status == Status.FAIL and "RuntimeError: kaput" in results["boom"].detail
    assert results["up"].status == Status.FAIL and "HTTP 401" in results["up"].detail
    assert results["up"].data["status_code"] == 401
    assert results["skip"].status == Status.SKIP and results["skip"].detail == "no credentials"


def test_a_hung_check_fails_at_its_timeout_and_the_rest_still_report():
    release = threading.Event()
    results = run(
        Check("hang", lambda: release.wait(10) and passed("late")), Check("ok", lambda: passed("x")), timeout_s=0.3
    )
    assert not release.is_set(), "the run ended while the hung check was still hanging"
    release.set()
    assert results["hang"].status == Status.FAIL and "timed out after 0.3 s" in results["hang"].detail
    assert results["ok"].status == Status.PASS


def test_checks_run_concurrently():
    # Eight checks that can only pass if all eight are in flight at once (run in sequence, the
    # first would wait at the barrier until its timeout and fail).
    barrier = threading.Barrier(8, timeout=5)
    results = run(*(Check(f"c{i}", lambda: barrier.wait() is not None and passed("x")) for i in range(8)))
    assert all(r.status == Status.PASS for r in results.values())


def test_results_keep_the_given_order_and_a_broken_progress_display_loses_nothing():
    def explode(_):
        raise ValueError("display broke")

    names = [f"c{i}" for i in range(5)]
    results = run_checks([Check(n, lambda: passed("x")) for n in names], max_workers=3, timeout_s=1, on_result=explode)
    assert [r.name for r in results] == names


def test_shared_value_is_computed_once_and_errors_are_remembered():
    calls = []

    def compute():
        calls.append(1)
        time.sleep(0.05)
        raise UpstreamError("aws", "sts", "no credentials")

    shared = Shared(compute)
    errors = []
    threads = [threading.Thread(target=lambda: errors.append(_catch(shared.get))) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert all(isinstance(e, UpstreamError) for e in errors)


def _catch(fn):
    try:
        fn()
    except Exception as exc:
        return exc
    return None

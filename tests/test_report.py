from commands.redaction import ACCOUNT_ID
from commands.report import Status, missing_checks, new_run_id, overall_status
from tests.factories import check


def test_all_pass_is_pass():
    assert overall_status(["a", "b"], [check("a"), check("b")]) == "PASS"


def test_warn_passes_with_its_caveat():
    assert overall_status(["a"], [check("a", Status.WARN)]) == "PASS"


def test_any_fail_or_skip_fails_the_run():
    assert overall_status(["a", "b"], [check("a"), check("b", Status.FAIL)]) == "FAIL"
    assert overall_status(["a", "b"], [check("a"), check("b", Status.SKIP)]) == "FAIL"


def test_a_missing_expected_check_fails_closed():
    assert overall_status(["a", "b"], [check("a")]) == "FAIL"
    assert [c.name for c in missing_checks(["a", "b"], [check("a")])] == ["b"]


def test_no_checks_at_all_is_not_a_pass():
    assert overall_status([], []) == "FAIL"


def test_run_ids_never_look_like_account_ids():
    for _ in range(200):
        assert not ACCOUNT_ID.search(new_run_id())

"""Nothing leaves unredacted: planted secrets and PII never survive any rendered form."""

import json

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from commands.redaction import REDACTOR, Redactor
from commands.report import Status
from tests.factories import check, report
from tests.redaction_forms import RENDERINGS

SECRET_ALPHABET = st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp"))
secrets_ = st.text(SECRET_ALPHABET, min_size=12, max_size=40)

emails = st.builds(
    lambda local, domain, tld: f"{local}@{domain}.{tld}",
    st.from_regex(r"[a-z0-9][a-z0-9._+-]{0,15}", fullmatch=True),
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True),
    st.sampled_from(["com", "org", "io", "co.uk", "shop"]),
)
digits = st.integers
phones = st.one_of(
    st.builds(lambda a, b, c: f"+1 ({a}) {b}-{c}", digits(200, 999), digits(200, 999), digits(1000, 9999)),
    st.builds(lambda a, b, c: f"{a}-{b}-{c}", digits(200, 999), digits(200, 999), digits(1000, 9999)),
    st.builds(lambda a, b, c: f"{a}.{b}.{c}", digits(200, 999), digits(200, 999), digits(1000, 9999)),
    st.builds(lambda n: f"+{n}", digits(10**9, 10**14)),
)
alnum = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=20, max_size=40)
tokens = st.one_of(
    alnum.map(lambda s: "shpat_" + s),
    alnum.map(lambda s: "shpss_" + s),
    alnum.map(lambda s: "sk-proj-" + s),
    alnum.map(lambda s: "xoxb-123-" + s),
    alnum.map(lambda s: "xapp-1-" + s),
    alnum.map(lambda s: "ghp_" + s),
    alnum.map(lambda s: "github_pat_" + s),
    st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", min_size=16, max_size=16).map(lambda s: "AKIA" + s),
    alnum.map(lambda s: "Bearer " + s),
    st.from_regex(r"[1-9][0-9]{11}", fullmatch=True),  # an AWS account id
)
# Pattern-matched values need a token boundary around them, as they have in real text.
separators = st.sampled_from([" ", "\n", '"', "'", "=", ": ", ",", "(", "/"])
filler = st.text(st.characters(codec="ascii", categories=("L", "N", "P", "Zs")), max_size=20)


def nested(leaf):
    return st.recursive(
        st.one_of(leaf, st.integers(), st.booleans(), st.none()),
        lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(filler, children, max_size=3)),
        max_leaves=8,
    )


@st.composite
def planted_reports(draw):
    secret = draw(secrets_)
    pii = [draw(emails), draw(phones), draw(tokens)]
    sep = draw(separators)

    def carrier():
        before, after = draw(filler), draw(filler)
        what = draw(st.sampled_from([secret, *pii]))
        return f"{before}{sep}{what}{sep}{after}"

    data = draw(nested(st.builds(carrier)))
    r = report(
        check("aws_identity", Status.FAIL, carrier(), nested=data, key=carrier()),
        check("shopify_rest", Status.PASS, carrier(), **{"status_code": 200, "body": [carrier(), {"x": carrier()}]}),
    )
    return r, secret, pii


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(planted_reports())
@pytest.mark.parametrize("form", sorted(RENDERINGS))
def test_no_planted_secret_or_pii_survives_any_rendering(form, planted):
    r, secret, pii = planted
    redactor = Redactor()
    clean_baseline = RENDERINGS[form](report(check("aws_identity"), check("shopify_rest")), redactor)
    assume(all(value not in clean_baseline for value in [secret, *pii]))
    redactor.register("shopify_admin_api_token", secret)
    out = RENDERINGS[form](r, redactor)
    for value in [secret, *pii]:
        assert value not in out
    # Escaped forms a renderer may produce must not carry the secret either.
    assert json.dumps(secret)[1:-1] not in out


def test_value_replacement_names_the_secret():
    r = Redactor()
    r.register("openai_api_key", "not-a-known-shape-0123")
    assert r.redact("key=not-a-known-shape-0123!") == "key=[REDACTED:openai_api_key]!"


def test_the_longest_secret_wins_when_one_contains_another():
    r = Redactor()
    r.register("short", "abcdefgh")
    r.register("long", "abcdefgh-ijklmnop")
    assert r.redact("x abcdefgh-ijklmnop y") == "x [REDACTED:long] y"


def test_secrets_too_short_to_hide_are_refused():
    with pytest.raises(ValueError, match="too short"):
        Redactor().register("pin", "1234")


def test_account_ids_are_kept_only_when_asked():
    text = "arn:aws:iam::123456789012:role/x at 1732345678901 ms"
    assert "123456789012" not in REDACTOR.redact(text)
    assert "1732345678901" in REDACTOR.redact(text)  # a millisecond timestamp is not an account id
    assert "123456789012" in REDACTOR.redact(text, keep_account_ids=True)


@pytest.mark.parametrize(
    "innocent",
    [
        "2026-11-23T06:00:43.123456+00:00",
        "last token refresh success 1.0 h ago (limit 8 h)",
        "token rejected: rotate it",
        "basic validation of the run",
        "rp-mw/prod/richpanel/api_key exists",
        "GET /admin/api/2026-10/shop.json answered 200",
        "run 3f2a9c1b0d took 1234 ms",
    ],
)
def test_ordinary_report_text_is_left_alone(innocent):
    assert REDACTOR.redact(innocent) == innocent

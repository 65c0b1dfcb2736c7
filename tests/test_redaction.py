"""Nothing leaves unredacted: planted secrets and PII never survive any rendered form."""

import base64
import json
import re
import time
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from commands.redaction import REDACTOR, Redactor, clip, redact_and_clip
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


# --- pattern gaps: encodings, AWS credentials, credential pairs, classic GitHub tokens ----------


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("GET /x?token%3Dghp_0123456789abcdefABCDEF HTTP/1.1", "ghp_0123456789abcdefABCDEF"),
        ("header=Bearer%20sk-proj-0123456789abcdefABCDEF", "sk-proj-0123456789abcdefABCDEF"),
        ("to=jane.doe%40example.com&x=1", "jane.doe"),
        ("to=jane.doe%2540example.com", "jane.doe"),  # encoded twice
        ("phone=%2B1%20%28555%29%20123-4567", "123-4567"),
        ("Authorization: Basic dXNlcjpodW50ZXIy", "dXNlcjpodW50ZXIy"),
        ("curl -H 'basic dXNlcjpodW50ZXIy'", "dXNlcjpodW50ZXIy"),
        ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI"),
        ('{"SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}', "wJalrXUtnFEMI"),
        ("<SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY</SecretAccessKey>", "wJalrXUtnFEMI"),
        ("AWS_SESSION_TOKEN=anything-goes-here-0123", "anything-goes"),
        ("x-amz-security-token:" + "IQoJb3JpZ2luX2VjEJr" + "A1b2" * 30, "IQoJb3JpZ2luX2VjEJr"),
        ("token " + "IQoJb3JpZ2luX2VjEJr" + "A1b2" * 30, "IQoJb3JpZ2luX2VjEJr"),
        ("FQoGZXIvYXdzEBYaDExampleSessionToken0123456789abcdefghijklmnop", "FQoGZXIvYXdzEBYaD"),
        ("grant_type=refresh_token&client_secret=cs-0123456789&refresh_token=rt-0123456789", "0123456789"),
        ("password=hunter2hunter2", "hunter2"),
        ('{"password": "correct horse battery staple"}', "horse"),
        ("{'Password': 'correct horse'}", "horse"),
        ('"{\\"password\\": \\"correct horse\\"}"', "horse"),
        ("Authorization: token 0123456789abcdef0123456789abcdef01234567", "0123456789abcdef0123456789abcdef01234567"),
        ("token 0123456789abcdef0123456789abcdef01234567", "0123456789abcdef0123456789abcdef01234567"),
        ("GITHUB_TOKEN=0123456789abcdef0123456789abcdef01234567", "0123456789abcdef0123456789abcdef01234567"),
        ("the role is in account 123456789012.", "123456789012"),
        ("line\\njane@example.com", "jane@example.com"),
    ],
)
def test_encoded_and_context_bound_secrets_are_hidden(text, hidden):
    out = Redactor().redact(text)
    assert hidden not in out, out


@pytest.mark.parametrize(
    "innocent",
    [
        "commit 0123456789abcdef0123456789abcdef01234567",
        "http://127.0.0.1/acme/rp-mw/tree/0123456789abcdef0123456789abcdef01234567/evidence/prod",
        "sha 0123456789abcdef0123456789abcdef01234567 (token refresh job)",
        "basic validation of the run",
        "version 123456789012.5",
        "GET /admin/api/2026-10/shop.json?fields=name%2Cid answered 200",
        "50% of checks, 100%",
    ],
)
def test_lookalikes_in_ordinary_text_are_left_alone(innocent):
    assert Redactor().redact(innocent) == innocent


def test_account_id_before_a_full_stop_keeps_the_stop():
    assert Redactor().redact("account 123456789012.") == "account [REDACTED:aws-account-id]."


def test_a_json_escape_before_an_address_survives_its_redaction():
    out = Redactor().redact(json.dumps({"detail": "line\njane@example.com"}))
    assert json.loads(out) == {"detail": "line\n[REDACTED:email]"}


def test_json_credential_values_keep_their_quotes():
    out = Redactor().redact(json.dumps({"password": "a b c", "client_secret": "x y z", "user": "bob"}))
    assert json.loads(out) == {
        "password": "[REDACTED:credential]",
        "client_secret": "[REDACTED:credential]",
        "user": "bob",
    }


SECRET = "Planted/Secret+Value=0123?&"


@pytest.mark.parametrize(
    "form",
    [
        json.dumps(SECRET)[1:-1],
        json.dumps(json.dumps(SECRET))[1:-1],
        quote(SECRET, safe=""),
        quote(SECRET),
        quote_plus(SECRET),
        re.sub("%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(SECRET, safe="")),  # decoded, not listed
        quote(quote(SECRET, safe=""), safe=""),
        base64.b64encode(SECRET.encode()).decode(),
        base64.urlsafe_b64encode(SECRET.encode()).decode(),
        base64.b64encode(b"user:" + SECRET.encode()).decode(),
        base64.b64encode(b"xy" + SECRET.encode() + b"tail").decode(),
        SECRET.replace("&", "&amp;"),
    ],
)
def test_registered_values_are_hidden_in_every_encoding(form):
    r = Redactor()
    r.register("planted", SECRET)
    out = r.redact(f"value: {form} end")
    assert form not in out
    assert "[REDACTED:planted]" in out


# --- redact, then cut -------------------------------------------------------------------------


def test_cutting_before_redacting_leaks_what_redact_and_clip_hides():
    r = Redactor()
    r.register("openai_api_key", "not-a-known-shape-0123456789")
    text = "upstream said: " + "x" * 180 + " key not-a-known-shape-0123456789 and jane.doe@example.com"
    for limit in range(190, 260):
        clipped = r.redact_and_clip(text, limit)
        assert len(clipped) <= limit
        assert "not-a-known" not in clipped and "jane.doe" not in clipped
        assert clipped == redact_and_clip(text, limit, redactor=r)
    # The bug it prevents: cut first, and the pieces no longer match.
    assert any("not-a-known" in r.redact(text[:limit]) for limit in range(190, 260))
    assert any("jane.doe" in r.redact(text[:limit]) for limit in range(190, 260))


def test_clip_never_ends_inside_a_redaction_mark():
    text = "a" * 10 + "[REDACTED:openai_api_key] and more"
    assert clip(text, 20) == "a" * 10 + "…"
    assert clip("short", 20) == "short"
    assert clip("abcdef", 1) == "…"


@given(st.text(max_size=300), st.integers(0, 320))
def test_redact_and_clip_is_redact_then_clip(text, limit):
    r = Redactor()
    out = r.redact_and_clip(text, limit)
    assert len(out) <= max(limit, 0)
    assert out == clip(r.redact(text), limit)


# --- property: generated secrets and PII in every encoding, in random text ----------------------

hexdigits = st.text("0123456789abcdef", min_size=40, max_size=40)
b64chars = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", min_size=40, max_size=40)
# With a digit, so a value is never a word of the text around it ("password=password").
values = st.from_regex(r"[a-zA-Z0-9]{4,16}[0-9][a-zA-Z0-9]{3,8}", fullmatch=True)


@st.composite
def context_bound(draw):
    """(text to plant, the part that must not survive)."""
    value = draw(values)
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return f"aws_secret_access_key={(k := draw(b64chars))}", k
    if kind == 1:
        return f'"SecretAccessKey": "{(k := draw(b64chars))}"', k
    if kind == 2:
        prefix = draw(st.sampled_from(["FQoGZXIvYXdz", "IQoJb3JpZ2luX2Vj", "FwoGZXIvYXdz"]))
        tok = prefix + draw(st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", min_size=60))
        return tok, tok
    if kind == 3:
        key = draw(st.sampled_from(["client_secret", "refresh_token", "password", "CLIENT_SECRET", "Password"]))
        return f"{key}={value}", value
    if kind == 4:
        return json.dumps({draw(st.sampled_from(["password", "client_secret", "refresh_token"])): value}), value
    if kind == 5:
        ctx = draw(st.sampled_from(["token ", "Authorization: token ", "Bearer ", "GITHUB_TOKEN="]))
        return ctx + (h := draw(hexdigits)), h
    if kind == 6:
        pair = f"{draw(values)}:{value}"
        # A header value ends at a space or quote; "/" around it would read as more base64.
        return " Basic " + base64.b64encode(pair.encode()).decode() + " ", base64.b64encode(pair.encode()).decode()
    if kind == 7:
        return f"account {(a := draw(st.from_regex(r'[1-9][0-9]{11}', fullmatch=True)))}.", a
    if kind == 8:
        return f"x-amz-security-token: {value}", value
    return f"<SessionToken>{value}</SessionToken>", value


ENCODINGS = {
    "plain": lambda s: s,
    "json": lambda s: json.dumps(s)[1:-1],
    "json twice": lambda s: json.dumps(json.dumps(s))[1:-1],
    "url": lambda s: quote(s, safe=""),
    "url twice": lambda s: quote(quote(s, safe=""), safe=""),
    "url lowercase": lambda s: re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(s, safe="")),
    "form": quote_plus,
}


@st.composite
def planted_texts(draw):
    """Random text carrying a registered secret, PII and tokens, each in one of the encodings."""
    secret = draw(secrets_)
    encoding = draw(st.sampled_from(sorted(ENCODINGS)))
    encode = ENCODINGS[encoding]
    sep = draw(separators)
    hidden: list[str] = []
    parts = [draw(filler)]
    background = [parts[0]]
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["secret", "secret-b64", "email", "phone", "token", "context"]))
        if kind == "secret":
            plant, must_hide = secret, [secret]
        elif kind == "secret-b64":
            pad = draw(st.text("abc:", max_size=3)).encode()
            alphabet = draw(st.sampled_from([base64.b64encode, base64.urlsafe_b64encode]))
            plant = alphabet(pad + secret.encode()).decode()
            must_hide = [secret, plant]
        elif kind == "email":
            plant = draw(emails)
            must_hide = [plant]
        elif kind == "phone":
            plant = draw(phones)
            must_hide = [plant]
        elif kind == "token":
            plant = draw(tokens)
            must_hide = [plant.removeprefix("Bearer ")]
        else:
            plant, core = draw(context_bound())
            must_hide = [core]
        encoded = encode(plant)
        hidden += [*must_hide, encoded, *(encode(h) for h in must_hide)]
        after = draw(filler)
        parts += [sep, encoded, sep, after]
        background += [sep, "\n", sep, after]
    return "".join(parts), secret, hidden, "".join(background)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(planted_texts())
def test_nothing_planted_survives_in_any_encoding(planted):
    text, secret, hidden, background = planted
    r = Redactor()
    assume(not any(value in background for value in hidden))  # the filler does not make one up itself
    r.register("planted_secret", secret)
    out = r.redact(text)
    bare = re.sub(r"\[REDACTED:[a-z_-]+\]", "\0", out)  # a value may be a word of a mark ("credenti")
    for value in hidden:
        assert value not in bare


@settings(max_examples=200, deadline=None)
@given(st.lists(hexdigits, min_size=1, max_size=3), filler)
def test_commit_shas_in_links_are_kept(shas, words):
    text = " ".join(f"[`{s[:7]}`](http://127.0.0.1/acme/rp-mw/commit/{s}) {words}" for s in shas)
    out = Redactor().redact(text)
    for s in shas:
        assert s in out


# --- linear time ------------------------------------------------------------------------------
# Wall-clock figures live in bench/redaction.py. This test only compares the CPU time of one input
# at two sizes (4x apart): linear is ~4x, quadratic ~16x; it allows 8x plus 20 ms of slack.

ADVERSARIAL = ["a", "@", "a@", "a.", "a@a.", "%", "%41", "1", "555 123 ", "(", "\\n", "Ab1/", 'password: "', "Basic "]


def _cpu(fn, text: str) -> float:
    best = float("inf")
    for _ in range(3):
        t0 = time.process_time()
        fn(text)
        best = min(best, time.process_time() - t0)
    return best


@pytest.mark.parametrize("unit", ADVERSARIAL)
def test_redaction_time_grows_linearly(unit):
    r = Redactor()
    r.register("planted", "PLANTED-secret-value-0123456789")
    small, large = ((unit * (n // len(unit) + 1))[:n] for n in (25_000, 100_000))
    assert _cpu(r.redact, large) <= 8 * _cpu(r.redact, small) + 0.02

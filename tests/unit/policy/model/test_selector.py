import pytest

from policy.model.selector import SelectorError, parse_selector

LABELS = {"app": "web", "tier": "frontend", "env": "prod-eu", "k8s.io/name": "x"}

CASES = [
    ("", True),
    ("all()", True),
    ("app == 'web'", True),
    ('app == "web"', True),
    ("app == 'db'", False),
    ("app != 'db'", True),
    ("missing != 'x'", True),  # absent labels are "not equal"
    ("missing == 'x'", False),
    ("has(app)", True),
    ("has(missing)", False),
    ("!has(missing)", True),
    ("app in {'web', 'db'}", True),
    ("app in {}", False),
    ("app not in {'web'}", False),
    ("missing not in {'web'}", True),
    ("env contains 'eu'", True),
    ("env starts with 'prod'", True),
    ("env ends with 'eu'", True),
    ("env ends with 'us'", False),
    ("missing contains ''", False),
    ("app == 'web' && tier == 'frontend'", True),
    ("app == 'db' || tier == 'frontend'", True),
    ("app == 'db' || tier == 'backend' && has(app)", False),
    ("(app == 'db' || has(tier)) && !has(missing)", True),
    ("!(app == 'web')", False),
    ("!!has(app)", True),
    ("k8s.io/name == 'x'", True),
    ("  app=='web'&&tier=='frontend'  ", True),
]


@pytest.mark.parametrize("text,expected", CASES)
def test_selector_matches(text, expected):
    assert parse_selector(text).matches(LABELS) is expected


@pytest.mark.parametrize("text", [t for t, _ in CASES])
def test_canonical_text_parses_to_the_same_tree(text):
    tree = parse_selector(text)
    assert parse_selector(str(tree)) == tree


ERRORS = [
    ("app ==", 7, "expected a quoted string"),
    ("app = 'x'", 5, "unexpected character '='"),
    ("app == 'x' &&", 14, "expected a label key"),
    ("(app == 'x'", 12, "expected ')'"),
    ("app == 'x')", 11, "'&&', '||' or end of selector"),
    ("app in {'a' 'b'}", 13, "expected '}'"),
    ("app not {'a'}", 9, "expected 'in'"),
    ("has(app", 8, "expected ')'"),
    ("app starts 'x'", 12, "expected 'with'"),
    ("app == 'x' & b == 'y'", 12, "unexpected character '&'"),
    ("app 'x'", 5, "expected an operator"),
    ("== 'x'", 1, "expected a label key"),
    ("app == 'unterminated", 8, "unexpected character"),
]


@pytest.mark.parametrize("text,column,message", ERRORS)
def test_syntax_errors_point_at_the_column(text, column, message):
    with pytest.raises(SelectorError) as caught:
        parse_selector(text)
    assert caught.value.column == column, str(caught.value)
    assert message in caught.value.message

"""Money is integer micro-USD inside, decimal strings at the edges, never floats."""

import pytest

from webapp import money


def test_decimal_strings_become_exact_micros():
    assert money.to_micros("0.125") == 125_000
    assert money.to_micros("100") == 100_000_000
    assert money.to_micros("0.0000005") == 1  # half a micro rounds up, never lost to float error


@pytest.mark.parametrize("bad", [0.1, True, "abc", "NaN", "Infinity", ""])
def test_floats_and_junk_are_refused(bad):
    with pytest.raises(ValueError):
        money.to_micros(bad)


def test_json_form_has_six_places():
    assert money.fmt(125_000) == "0.125000" and money.fmt(None) == "0.000000"


def test_page_form_keeps_small_rewards_visible():
    assert money.usd(1_250_000) == "$1.25"
    assert money.usd(554) == "$0.0006"  # a tiny render's reward is not "$0.00"
    assert money.usd(0) == "$0.00"
    assert money.usd(-2_500_000) == "-$2.50"
    assert money.usd(554, 2) == "$0.00"

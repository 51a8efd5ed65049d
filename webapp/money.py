"""Money as integer micro-USD (1 USD = 1,000,000); decimal strings at the edges, never floats."""

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

MICROS = 1_000_000


def to_micros(value) -> int:
    """Parse a USD amount ("0.125", Decimal, int) into micro-USD; raises ValueError on junk or floats."""
    if isinstance(value, float) or isinstance(value, bool):
        raise ValueError("money must be a decimal string, not a float")
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ValueError(f"not a decimal amount: {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"not a finite amount: {value!r}")
    return int((amount * MICROS).to_integral_value(rounding=ROUND_HALF_UP))


def fmt(micros: int | None) -> str:
    """micro-USD -> "0.125000" (the JSON form)."""
    return str((Decimal(micros or 0) / MICROS).quantize(Decimal("0.000001")))


def usd(micros: int | None, places: int | None = None) -> str:
    """micro-USD -> "$1.25" for pages; amounts under a cent get 4 places so a small reward isn't "$0.00"."""
    if places is None:
        places = 4 if 0 < abs(micros or 0) < MICROS // 100 else 2
    q = Decimal(1).scaleb(-places)
    amount = (Decimal(micros or 0) / MICROS).quantize(q, rounding=ROUND_HALF_UP)
    return f"-${-amount:,}" if amount < 0 else f"${amount:,}"


def usd_exact(micros: int | None) -> str:
    """micro-USD -> "$23.0025", "$3.00", "$0.00001": every digit that is not zero, never fewer than cents
    (the money pages, where a total must match the CSV to the micro-dollar)."""
    amount = Decimal(micros or 0) / MICROS
    text = f"{abs(amount):,.6f}".rstrip("0")
    whole, _, frac = text.partition(".")
    text = f"{whole}.{frac.ljust(2, '0')}"
    return f"-${text}" if amount < 0 else f"${text}"


# One sentence, shown wherever a price appears (portal pages; the app keeps the same words in
# tray_client/ui/viewmodel.py, and a test holds the two equal).
BENCH_HOUR_TEXT = ("A bench-hour is an hour of a reference machine's work; a worker with Bench Score 2000 "
                   "does two bench-hours per hour.")

"""Reports read from rollups compared with the same reports from raw rows: exact counts and
money, latency percentiles within the histogram's stated error."""

from bidlog.reports.figures import LATENCY_ERROR_MS, LATENCY_ERROR_SHARE


def within_error(estimate: int | None, exact: int | None) -> bool:
    if estimate is None or exact is None:
        return estimate == exact
    # One more ms for rounding the bucket middle to whole ms.
    return abs(estimate - exact) <= max(LATENCY_ERROR_MS, LATENCY_ERROR_SHARE * exact) + 1


def assert_same_latency(fast: dict, exact: dict) -> None:
    assert fast["avg"] == exact["avg"]
    assert fast["max"] == exact["max"]
    for name in ("p50", "p95", "p99"):
        assert within_error(fast[name], exact[name]), (name, fast[name], exact[name])


def assert_same_summary(fast: dict, exact: dict) -> None:
    for name, value in exact.items():
        if name == "latency_ms":
            assert_same_latency(fast[name], value)
        elif name == "buyers":
            assert [row["buyer"] for row in fast[name]] == [row["buyer"] for row in value]
            for fast_row, exact_row in zip(fast[name], value, strict=True):
                assert_same_latency(fast_row.pop("latency_ms"), exact_row.pop("latency_ms"))
                fast_rec = fast_row.pop("recommended_timeout_seconds")
                exact_rec = exact_row.pop("recommended_timeout_seconds")
                # The recommendation comes from p99, so it may differ only at a rounding edge.
                assert abs(fast_rec - exact_rec) <= 1
                assert fast_row == exact_row
        else:
            assert fast[name] == value, name

"""Chart specifications of live figures as plain Vega-Lite dicts (the pages show them with st.vega_lite_chart)."""
from __future__ import annotations

from collections.abc import Sequence

from core.stream import LabelRecord
from core.tasks import Task

HISTORY_POINTS = 60   # points per class line: the browser redraws the chart at every refresh of the page


def probability_history(records: Sequence[LabelRecord], task: Task, points: int = HISTORY_POINTS) -> dict | None:
    """A line per class of the largest face's probabilities over the records (seconds before the latest),
    at most `points` of them, evenly spaced and ending with the latest; None without a face.

    Written out rather than built through st.line_chart: its Altair layer took about 60 ms of the
    server's interpreter lock a refresh, and with four webcams that halved every stream's frame rate."""
    rows = [(r.t, r.probs[0]) for r in records if r.probs]
    if not rows:
        return None
    step = -(-len(rows) // points)
    rows = rows[::-1][::step][::-1]
    last = rows[-1][0]
    names = list(task.display_names)
    return {
        "data": {"values": [{"time": round(t - last, 2), "class": name, "probability": p}
                            for t, probs in rows for name, p in zip(names, probs)]},
        "mark": {"type": "line"},
        "height": 200,
        "encoding": {
            "x": {"field": "time", "type": "quantitative", "title": "seconds"},
            "y": {"field": "probability", "type": "quantitative", "scale": {"domain": [0, 1]}},
            "color": {"field": "class", "type": "nominal", "title": None,
                      "scale": {"domain": names, "range": task.hex_colors}},
        },
    }

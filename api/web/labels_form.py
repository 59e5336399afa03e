"""OA's label widgets as form fields, and back: exactly the labels the task offers.

yes_no: a pair of radio buttons (1 / 0); flag: a checkbox (unticked = 0, as OA's web
front end sends it); likert: five radio buttons mapped to 0, 0.25, 0.5, 0.75, 1. A
yes/no or likert question left unanswered is left out, so the domain's own rule on
mandatory labels decides (and names the missing label).
"""

from __future__ import annotations

from typing import Any

from domain.model.errors import LabelValueOutOfRangeError

LIKERT = (0.0, 0.25, 0.5, 0.75, 1.0)


def parse(ctx: Any, labels: list[dict[str, Any]]) -> dict[str, float]:
    values: dict[str, float] = {}
    for label in labels:
        name, widget = label["name"], label["widget"]
        raw = ctx.field(f"label_{name}")
        if widget == "flag":
            values[name] = 1.0 if raw == "1" else 0.0
        elif raw == "":
            continue
        elif widget == "yes_no":
            if raw not in ("0", "1"):
                raise LabelValueOutOfRangeError(f"{name} must be yes or no")
            values[name] = float(raw)
        else:
            try:
                values[name] = LIKERT[int(raw)]
            except (ValueError, IndexError):
                raise LabelValueOutOfRangeError(f"{name} must be one of 1 to 5") from None
    return values

"""One module per view; each exposes ``render(sel: Selection) -> None``."""

from __future__ import annotations

from first_dashboard.views import compare, items, knowledge, overview, reliability, training, whatif

VIEWS = {
    "Overview": overview.render,
    "Reliability": reliability.render,
    "Compare": compare.render,
    "Items": items.render,
    "Training": training.render,
    "Concentrated knowledge": knowledge.render,
    "What-if": whatif.render,
}

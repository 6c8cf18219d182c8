"""Evaluation sets that ship with the code (nothing is downloaded): each a versioned list of
examples, named by the version a prompt's lineage records (``evaluation_data``)."""

from __future__ import annotations

from genai.evaluation import Example
from tenancy.errors import NotFoundError

_CAPITALS = {
    "France": "Paris",
    "Germany": "Berlin",
    "Italy": "Rome",
    "Spain": "Madrid",
    "Portugal": "Lisbon",
    "Japan": "Tokyo",
}

EVALUATION_SETS: dict[str, list[Example]] = {
    "capitals-v1": [
        Example(country.lower(), {"country": country}, expected=capital, must_contain=[capital])
        for country, capital in _CAPITALS.items()
    ],
}


def evaluation_set(version: str) -> list[Example]:
    """The examples of an evaluation set's version, or a 404 naming the ones there are."""
    found = EVALUATION_SETS.get(version)
    if found is None:
        known = ", ".join(sorted(EVALUATION_SETS))
        raise NotFoundError(f"no evaluation set {version!r} (there are: {known})")
    return list(found)

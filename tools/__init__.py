"""Maintainer tools (not installed with the library): ``python -m tools.notebooks`` builds and checks the
notebooks, ``python -m tools.readme`` writes the README's generated sections, ``python -m tools.bench`` times the
losses. Run them from the repository root."""

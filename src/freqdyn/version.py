"""The package version (the release whose module paths pickles may name: see CHANGELOG.md)."""

__version__ = "0.1.0"

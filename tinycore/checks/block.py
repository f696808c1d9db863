"""Checkers for chapter exercises (being written)."""

__all__: list[str] = []

"""Supervision trees (child specs, strategies, restart intensity, breakers). Built on runtime/."""

"""rtqa: flows."""

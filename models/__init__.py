"""rtqa: models."""

"""rtqa: portal."""

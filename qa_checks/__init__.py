"""rtqa: qa_checks."""

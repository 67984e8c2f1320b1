"""Reports of a study's run root (terminal now; figures and aggregate scores arrive with policies)."""

"""Runs the whole system locally: embedded backing services and the three services."""

"""The tests of tombola, against real services (see tests/services.py)."""

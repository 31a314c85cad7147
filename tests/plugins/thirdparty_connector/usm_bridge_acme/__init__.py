"""Test-only third-party connector."""

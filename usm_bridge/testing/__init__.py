"""The standard connector test suite and helpers for connector authors."""

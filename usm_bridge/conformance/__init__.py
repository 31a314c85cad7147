"""Conformance checks and reports: the evidence auditors read."""

"""Tests of the connector contract's standard suite and of usm_bridge.http."""

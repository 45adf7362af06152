"""Conformance suites that every registered strategy and evaluator must pass."""

"""Chaos tests: floxyd processes killed at random, PostgreSQL restarted, invariants checked."""

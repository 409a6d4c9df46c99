"""Tests of the store: the state machine, the schema and the repository."""

"""Helpers shared by several test packages: fixtures' building blocks, handlers, checks."""

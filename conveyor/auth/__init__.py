"""Who is calling: principals, roles and namespaces (docs/security.md)."""

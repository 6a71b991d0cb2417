"""The HTTP surface: knows HTTP and JSON, knows no engine internals (only engines.base and the registry)."""

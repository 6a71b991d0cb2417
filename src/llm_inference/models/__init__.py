"""What may be served, where it comes from, and which engine serves it."""

"""Inference backends behind the small protocol in engines.base."""

"""Shared plumbing: configuration, logging, failpoints."""

"""Shared test helpers: real registries and base images made with independent tools."""

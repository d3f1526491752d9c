"""Forges: URL parsing, host settings and REST clients for GitHub, GitLab and Forgejo."""

"""devcontainer.json support: discovery, JSONC loading, the config model and variables."""

"""Server-rendered web pages of the registry."""

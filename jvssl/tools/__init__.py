"""Command-line tools: `python -m jvssl.tools.<name>`."""

"""The front door: app assembly, correlation, problems, settings and the CLI."""

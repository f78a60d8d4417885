"""The `mmkd` command line (the only package that imports typer)."""

"""`python -m training ...` is the same as `brandforge ...`."""

from brandforge.cli import app

app(prog_name="brandforge")

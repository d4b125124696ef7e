from brandforge.cli import app

app(prog_name="brandforge")

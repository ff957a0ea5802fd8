"""``python -m spikeglm``: the command line (the one place the library hands over to the CLI package)."""

from spikeglm_cli.main import main

main(prog_name="spikeglm")

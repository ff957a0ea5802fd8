"""``python -m spikeglm``: the command line (the one place the library hands over to the CLI package)."""

from spikeglm.cli import main

main(prog_name="spikeglm")

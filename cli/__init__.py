"""The ``spikeglm`` command line: a thin layer over the :mod:`spikeglm` library."""

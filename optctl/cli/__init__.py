"""The ``optctl`` command: one module per command, each runs it and prints.

:mod:`optctl.cli.main` builds the parser (argparse only, so ``--help`` and argument
errors are instant) and loads the module of the command it runs. A command validates
its input with light modules first and loads the numerical stack it needs (CasADi, jax,
matplotlib) only then, so a mistake in a config is reported at once.
"""

"""The ``objdet`` command line: thin wrappers that parse flags and call the library.

Each module here (other than ``main``) defines ``register(subcommands)``, which adds its
sub-command parser(s) with ``set_defaults(run=...)``; ``run(args) -> int`` does the work.
Modules import the library inside ``run`` so that ``objdet --help`` stays fast.
"""

"""The fashion CLI's commands, one module each (see fashion/fashion.py).

Each module has ``add_parser(subparsers, parents)`` (``score`` adds ``score`` and
``check``) and a ``run(args)`` set as the parser's ``func``, returning a result dict.
"""

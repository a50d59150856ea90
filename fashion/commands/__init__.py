"""The fashion CLI's commands, one module each (see fashion/fashion.py).

Each module has ``add_parser(subparsers, parents)`` (``score`` adds ``score`` and
``check``) and a ``run(args)`` set as the parser's ``func``, returning a result dict.
Shared flags come from fashion.cli_args and shared steps from the application's
modules (fashion.data.sources, runs, records, detections, groundtruth); only ``demo``
uses other commands, running train, evaluate and detect in turn.
"""

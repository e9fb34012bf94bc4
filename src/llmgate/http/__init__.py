"""HTTP primitives of the data plane and the admin API: the lowest layer above ``errors`` and
``schemas``.

Modules here (request bodies, paths, headers, variables, expressions, bounded regexes) import
nothing from ``plugins``, ``runtime``, ``proxy``, ``admin`` or ``observability``; everything
else may import them.
"""

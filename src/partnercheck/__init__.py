"""partnercheck: tell a genuine partnership proposal from a sales pitch dressed up as one.

The library is importable piece by piece and nothing heavy is imported here, so that the
mail-filter client stays fast::

    from partnercheck.sources import Source
    from partnercheck.model import load_model

    model = load_model()
    for record in Source("inbox.mbox"):
        print(model.classify(record).label)
"""

__version__ = "0.1.0"

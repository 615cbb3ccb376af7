"""partnercheck: tell a genuine partnership proposal from a sales pitch dressed up as one.

The library is importable piece by piece and nothing heavy is imported here, so that the
mail-filter client stays fast::

    from partnercheck.classify import classify
    from partnercheck.model import load_model
    from partnercheck.settings import default_model_path
    from partnercheck.sources import Source

    model = load_model(default_model_path())
    for verdict in classify(Source("inbox.mbox"), model):
        print(verdict.label, verdict.summary())
"""

__version__ = "0.1.0"

"""partnercheck: tell a genuine partnership proposal from a sales pitch dressed up as one.

The library in four names, loaded on first use so that importing the package costs nothing
(the mail-filter client imports it too)::

    from partnercheck import Source, classify, load_model, load_policy

    model = load_model()  # the model in force: --model's, $PARTNERCHECK_MODEL, config, personal, shipped
    for verdict in classify(Source("inbox.mbox"), model, load_policy()):  # the config's lists, rules, memory
        print(verdict.label, verdict.summary())
"""

__version__ = "0.1.0"
__all__ = ["Source", "classify", "load_model", "load_policy"]


def __getattr__(name: str):
    if name == "classify":
        from .deciding.classify import classify

        return classify
    if name == "load_model":
        from .deciding.model import load_model

        return load_model
    if name == "load_policy":
        from .deciding.policy import load_policy

        return load_policy
    if name == "Source":
        from .reading.sources import Source

        return Source
    raise AttributeError(f"module 'partnercheck' has no attribute {name!r}")

"""The labels and verdicts, as defined once in LABELS.md.

``partnership``: a genuine proposal to work together, both sides bringing something and
sharing risk and upside. ``pitch``: a vendor selling goods or services for money, however
much it talks of partnering. ``other``: everything else. ``unsure`` is a verdict, never a
training label.
"""

PARTNERSHIP = "partnership"
PITCH = "pitch"
OTHER = "other"
UNSURE = "unsure"

LABELS = (PARTNERSHIP, PITCH, OTHER)
VERDICTS = (PARTNERSHIP, PITCH, OTHER, UNSURE)

#: The reason given for ``unsure`` when a message has no text to judge.
UNREADABLE = "unreadable"

"""Understanding a record: normalised text, tagged tokens, rule hits and the feature matrix."""

"""Running workflows over many messages or one: batch labelling, output files, the mail filter, IMAP."""

"""Reading mail: bytes and files to one :class:`~partnercheck.reading.mail.EmailRecord` each."""

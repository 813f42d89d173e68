from . import charsets as _charsets  # noqa: F401 - registers the MariaDB charset names as codecs

"""Configuration as code: APISIX's standalone ``apisix.yaml`` format, read and written.

- ``document``: the file format (YAML or JSON, ``#END``, ``${{VAR}}``), parsed into the admin
  API's addresses, and rendered from stored items (``llmgate config dump``).
- ``plan``: a whole document compared with a store and validated as a whole by the admin API's
  own checks; applied in one transaction, one revision (``llmgate config diff|apply``).
- ``standalone``: ``llmgate serve --standalone FILE``: a private store kept equal to the file.
"""

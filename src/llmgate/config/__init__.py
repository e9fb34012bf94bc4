"""Configuration as code: APISIX's standalone ``apisix.yaml`` format, read and written.

- ``document``: the file format (YAML or JSON, ``#END``, ``${{VAR}}``) and what it holds: entries
  at the admin API's addresses.
- ``reading``: a file parsed into a document (``env_vars``, ``yaml_loading``, ``entries``);
  ``rendering``: stored items written as one (``llmgate config dump``).
- ``plan``: a whole document compared with a store and validated as a whole by the admin API's
  own checks; applied in one transaction, one revision (``llmgate config diff|apply``).
- ``standalone``: ``llmgate serve --standalone FILE``: a private store kept equal to the file.
"""

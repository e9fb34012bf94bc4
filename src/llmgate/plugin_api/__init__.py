"""The plugin API: what a plugin builds on (``config``, ``plugin``) and the helpers several
plugins share.  Nothing is re-exported here: ``config`` sits in a lower layer than the rest
(docs/architecture.md), and importing this package must not load the rest."""

"""The request path: org policy → user consent → agent permissions → issue.

Each layer is a small object with one ``evaluate`` method answering allow or
deny with a reason; ``evaluate_layers`` runs them all and the credential is
issued only if every one allows.
"""

"""The pieces of ``kontext_cli.gendocs``: model, prose, man pages, shell completions."""

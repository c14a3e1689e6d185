"""Modules that add ``diazepam-cds`` sub-commands; importing one registers its command."""

import cds_service.security.cli  # noqa: F401  (token)

"""Modules that add ``diazepam-cds`` sub-commands; importing one registers its command."""

import cds_service.replay  # noqa: F401  (replay)
import cds_service.report  # noqa: F401  (report)
import cds_service.rules_cli  # noqa: F401  (rules)
import cds_service.security.cli  # noqa: F401  (token)
import cds_service.store.commands  # noqa: F401  (db upgrade)

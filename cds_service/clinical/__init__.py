"""The clinical engine in one folder, beside its data (``cds_service/data/``, ``cards/``).

Order and record building, dosing arithmetic, value sets, policy, the rules (pure functions),
suggestions, card composition and rendering, and the plain models they pass. Everything else in
``cds_service`` is the service shell: HTTP, protocol, security, FHIR access, store, tools.
"""

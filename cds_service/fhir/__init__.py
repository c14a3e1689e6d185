"""Patient data for the rules: from prefetch, else from the EHR's FHIR server."""

"""diazepam-cds: a CDS Hooks 2.0 service advising on diazepam orders."""

__version__ = "0.1.0"

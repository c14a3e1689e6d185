"""What the CDS committee sees (issue 16): the alert-performance dashboard and the card
gallery, rendered on the server as HTML with SVG charts and no JavaScript.

One module per job: ``window`` (the date range), ``query`` (every aggregate, in SQL, from the
store), ``stats`` (Wilson intervals), ``figures`` (the aggregates as figures: a chart and the
table it is drawn from), ``charts`` (a chart as SVG with pygal), ``export`` (a table as CSV or
JSON), ``page`` (the HTML of both pages), ``gallery`` (fixture scenarios through the engine).
The web pages (``cds_service.admin``) and the files written by ``diazepam-cds report --html``
and ``diazepam-cds rules --gallery`` come from the same renderer. Nothing here sees patient
data: the store holds codes, numbers and keyed hashes, and no hash is ever shown.
"""

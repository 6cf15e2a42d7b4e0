"""fairseq-wae-explore: a page in the browser for one trained autoencoder (reconstruction, interpolation,
prior samples, nearest neighbours in a corpus, a 2-D map of codes, the model card).

``limits`` checks what the page sends, ``service`` runs it through the Python interface (so every
result is the interface's), ``app`` serves the page and the JSON routes; ``fairseq_wae.cli.explore``
starts it. Needs the ``explore`` extra (``pip install -e .[explore]``): FastAPI, uvicorn and plotly,
whose bundled plotly.min.js the page loads from this server, so it works offline.
"""

"""The online side: one collection served by Ray Serve (prism_api.search_service).

app.build() is the application builder (SERVE_IMPORT_PATH) a SearchService's RayService and
`prism serve` run: a ModelDeployment per embedding extractor the collection records, loaded at the
recorded model version, and the HTTP Ingress (POST /embed, POST /search, GET /info, /openapi.json).
Nothing here is imported by the batch pipeline; importing this package imports no Ray.
"""

"""REST API on HTTP_PORT: ``/api/v1``, ``/health``, ``/metrics``, OpenAPI and AsyncAPI."""

"""OCI distribution client (OCI distribution-spec v1.1 / Docker Registry HTTP API v2).

Use :class:`executor.registry.client.RegistryClient`. Modules:

* ``client`` -- ``RegistryClient`` (and the historical import path of every name below);
* ``core`` -- connections, endpoint choice, retry budget, error translation, mirrors, ping;
* ``manifests``, ``blob_download``, ``blob_upload`` -- the operations;
* ``options`` -- ``RegistryOptions`` (the CLI's registry flags); ``platforms`` -- ``os/arch``;
* ``endpoints`` -- ``Endpoint`` (scheme, host, TLS settings; no HTTP library); ``tls`` -- client
  TLS contexts; ``firstcontact`` -- the CLI's stdlib ``GET /v2/`` before httpx is imported;
* ``transport`` -- TLS, auth challenges, one request; ``tokens`` -- the Docker token flow;
  ``auth`` -- credentials (config.json, helpers); ``retry`` -- what is retried, how long;
* ``cancel`` -- aborting transfers from a signal handler; ``messages``, ``mediatypes``.
"""

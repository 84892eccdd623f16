"""A development stand-in for TensorFlow Serving on one machine.

Production runs the real tensorflow_model_server on Kubernetes (deployer/manifests.py). This
package serves the same SavedModel layout, reads the same models.config, takes the same
command-line flags and answers the same REST API, so the local runtime backend and the
end-to-end tests exercise exactly what clients will see in production:

    python -m tfserving_dev --rest_api_port=8501 --model_config_file=models.config

What it copies from TF Serving, and why it matters here:
- Version states START -> LOADING -> AVAILABLE (or END with an error), reported by
  /v1/models/<name>: the readiness probe and Modelgate's rollout checks read them.
- Error messages and HTTP codes (404 "Servable not found for request: Specific(m, 3)",
  400 for a bad label or input), so callers' error handling is tested for real.
- Metrics under TF Serving's own names, recorded where TF Serving records them, so
  dashboards and canary analysis can be built against this server (only with
  --monitoring_config_file, as tensorflow_model_server).

It serves REST only (no gRPC): predict, classify, regress, status and metadata, held against
TF Serving's own test cases by tests/test_tfserving_conformance.py (differences kept on
purpose: docs/tfserving-dev.md). Only the standard library, TensorFlow and prometheus_client
are used (and tensorflow-serving-api for TF Serving's config messages); TensorFlow is imported
on first load so importing the server stays cheap.

A program of its own, which the deployer's local backend starts: it imports nothing of the
console, the registry or the deployer but deployer.tfserving, the names of TF Serving's
interface (an import-linter contract in pyproject.toml keeps it so). Its parts:

- cli.py       tensorflow_model_server's command line (flags.py parses its flags);
- server.py    LocalModelServer: the config, its reloads, start-up as the real binary;
- manager.py   which versions are aspired, loading, AVAILABLE or END;
- rest_api.py  the REST routes, error bodies and status codes;
- config.py    models.config and monitoring.config, through TF Serving's config messages;
- tensors.py   loading SavedModels, and the JSON <-> tensor conversions of json_tensor.cc;
- metrics.py   the Prometheus metrics under TF Serving's names;
- errors.py    TF Serving's status codes and their HTTP statuses.
"""

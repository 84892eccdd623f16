"""A tiny real training job: builds a TensorFlow SavedModel and logs it to MLflow.

It stands in for a user's training script, so it uses MLflow's own client API
directly (as any training job would) rather than Modelgate's gateway. The demo
seed and the tests use it; nothing is downloaded, the "training" is a fixed
linear softmax classifier over four features (iris-shaped), small enough to
build in a second.
"""

import os
from dataclasses import dataclass

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FEATURES = 4
CLASSES = 3


@dataclass(frozen=True)
class LoggedModel:
    run_id: str
    model_uri: str  # models:/m-<id>
    artifact_uri: str


def build_module(seed: int, faulty: bool = False):
    """faulty: a regression a smoke test misses. It answers an all-zero row (what the
    deployer's smoke predict sends) but fails on any real input, as a broken preprocessing
    step would; the post-rollout guard must catch it under load."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(FEATURES, CLASSES)).astype("float32")
    bias = rng.normal(size=(CLASSES,)).astype("float32")

    class IrisClassifier(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(weights, name="w")
            self.b = tf.Variable(bias, name="b")

        @tf.function(input_signature=[tf.TensorSpec([None, FEATURES], tf.float32, name="features")])
        def serve(self, features):
            if faulty:
                tf.debugging.assert_less_equal(tf.reduce_max(tf.abs(features)), 0.0, message="feature scaling failed")
            return {"probabilities": tf.nn.softmax(tf.matmul(features, self.w) + self.b)}

    return IrisClassifier()


def signature():
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype("float32"), (-1, FEATURES), "features")]),
        outputs=Schema([TensorSpec(np.dtype("float32"), (-1, CLASSES), "probabilities")]),
    )


def log_model(
    *,
    tracking_uri: str,
    experiment: str,
    artifact_location: str,
    seed: int,
    metrics: dict,
    params: dict | None = None,
    with_signature: bool = True,
    faulty: bool = False,
) -> LoggedModel:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment, artifact_location=artifact_location)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)
    try:
        module = build_module(seed, faulty=faulty)
        with mlflow.start_run(experiment_id=exp_id, run_name=f"iris-seed-{seed}") as run:
            mlflow.log_params({"seed": seed, "features": FEATURES, **(params or {})})
            mlflow.log_metrics(metrics)
            info = mlflow.tensorflow.log_model(
                module,
                name="model",
                signature=signature() if with_signature else None,
                saved_model_kwargs={"signatures": {"serving_default": module.serve}},
            )
    finally:
        mlflow.set_tracking_uri(previous)
    return LoggedModel(run_id=run.info.run_id, model_uri=info.model_uri, artifact_uri=info.artifact_path)

"""A tiny real training job: builds a TensorFlow SavedModel and logs it to MLflow.

It stands in for a user's training script, so it uses MLflow's own client API
directly (as any training job would) rather than Modelgate's gateway. The demo
seed and the tests use it; nothing is downloaded. The training is real but tiny: a
linear softmax classifier fitted by gradient descent to iris-like flowers drawn
from the per-class means and standard deviations of Fisher's iris data, so it
answers as an ML engineer expects (the textbook setosa, 5.1/3.5/1.4/0.2, is class
0), in well under a second.
"""

import os
from dataclasses import dataclass

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FEATURES = 4
CLASSES = 3

# Fisher's iris data (1936), per class: the mean and standard deviation of sepal length,
# sepal width, petal length and petal width, in cm. Classes in the usual order.
IRIS_CLASSES = ("setosa", "versicolor", "virginica")
IRIS_MEANS = ((5.006, 3.428, 1.462, 0.246), (5.936, 2.770, 4.260, 1.326), (6.588, 2.974, 5.552, 2.026))
IRIS_STDS = ((0.352, 0.379, 0.174, 0.105), (0.516, 0.314, 0.470, 0.198), (0.636, 0.322, 0.552, 0.275))


@dataclass(frozen=True)
class LoggedModel:
    run_id: str
    model_uri: str  # models:/m-<id>
    artifact_uri: str


def iris_like(seed: int, per_class: int = 50):
    """Flowers drawn from each class's normal distribution: features (n, 4) and labels (n,)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    features = np.concatenate([rng.normal(m, s, size=(per_class, FEATURES)) for m, s in zip(IRIS_MEANS, IRIS_STDS)])
    return features, np.repeat(np.arange(CLASSES), per_class)


def fit(features, labels, *, steps: int = 500, rate: float = 0.5):
    """Softmax regression by full-batch gradient descent, on standardized features; the
    standardization is folded into the returned weights and bias, which take raw cm."""
    import numpy as np

    mean, std = features.mean(axis=0), features.std(axis=0)
    x = (features - mean) / std
    onehot = np.eye(CLASSES)[labels]
    w, b = np.zeros((FEATURES, CLASSES)), np.zeros(CLASSES)
    for _ in range(steps):
        logits = x @ w + b
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        w -= rate * x.T @ (p - onehot) / len(x)
        b -= rate * (p - onehot).mean(axis=0)
    return (w / std[:, None]).astype("float32"), (b - (mean / std) @ w).astype("float32")


def build_module(seed: int, faulty: bool = False):
    """faulty: a regression a smoke test misses. It answers an all-zero row (what the
    deployer's smoke predict sends) but fails on any real input, as a broken preprocessing
    step would; the post-rollout guard must catch it under load."""
    import tensorflow as tf

    weights, bias = fit(*iris_like(seed))

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

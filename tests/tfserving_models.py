"""SavedModels shaped like TF Serving's own test models, built once per session.

half_plus_two copies tensorflow_serving/servables/tensorflow/testdata/saved_model_half_plus_two.py:
a TF1 graph over serialized tf.Examples with features x (and x2), y = 0.5 * x + 2, and the
signatures TF Serving's handler tests call: serving_default (predict x -> y), classify_x_to_y,
regress_x_to_y, regress_x2_to_y3. typed is a predict-only model with one input of each dtype
json_tensor.cc converts, echoing them back, so the JSON conversions are checked end to end.
"""

from pathlib import Path


def build_half_plus_two(path: Path) -> None:
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as session:
        a = tf.Variable(0.5, name="a")
        b = tf.Variable(2.0, name="b")
        c = tf.Variable(3.0, name="c")
        serialized = v1.placeholder(tf.string, name="tf_example")
        features = v1.parse_example(
            serialized,
            {
                "x": v1.FixedLenFeature([1], dtype=tf.float32),
                "x2": v1.FixedLenFeature([1], dtype=tf.float32, default_value=[0.0]),
            },
        )
        x = tf.identity(features["x"], name="x")
        y = tf.add(tf.multiply(a, x), b, name="y")
        y2 = tf.add(tf.multiply(a, x), c, name="y2")
        x2 = tf.identity(features["x2"], name="x2")
        y3 = tf.add(tf.multiply(a, x2), c, name="y3")
        session.run(v1.global_variables_initializer())
        info = v1.saved_model.utils.build_tensor_info
        examples = {"inputs": info(serialized)}

        def sig(inputs, outputs, method):
            return v1.saved_model.signature_def_utils.build_signature_def(
                inputs=inputs, outputs={k: info(v) for k, v in outputs.items()}, method_name=method
            )

        builder = v1.saved_model.Builder(str(path))
        builder.add_meta_graph_and_variables(
            session,
            ["serve"],
            signature_def_map={
                "serving_default": sig({"x": info(x)}, {"y": y}, "tensorflow/serving/predict"),
                "classify_x_to_y": sig(examples, {"scores": y}, "tensorflow/serving/classify"),
                "regress_x_to_y": sig(examples, {"outputs": y}, "tensorflow/serving/regress"),
                "regress_x_to_y2": sig(examples, {"outputs": y2}, "tensorflow/serving/regress"),
                "regress_x2_to_y3": sig(examples, {"outputs": y3}, "tensorflow/serving/regress"),
            },
        )
        builder.save()


def build_typed(path: Path) -> None:
    import tensorflow as tf

    specs = {"f": tf.float32, "d": tf.float64, "i": tf.int32, "l": tf.int64, "s": tf.string, "b": tf.bool}

    class Typed(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec(None, dtype, name=name) for name, dtype in specs.items()])
        def echo(self, f, d, i, l, s, b):
            return {
                "f_out": tf.identity(f),
                "d_out": tf.identity(d),
                "i_out": tf.identity(i),
                "l_out": tf.identity(l),
                "s_out": tf.identity(s),
                "s_out_bytes": tf.identity(s),
                "b_out": tf.identity(b),
            }

        @tf.function(input_signature=[tf.TensorSpec(None, tf.float32, name="x")])
        def third(self, x):
            return {"y": x / 3.0}

        @tf.function(input_signature=[tf.TensorSpec(None, tf.string, name="text")])
        def text(self, text):
            return {"text": tf.identity(text), "text_bytes": tf.identity(text)}

    module = Typed()
    tf.saved_model.save(
        module, str(path), signatures={"echo": module.echo, "serving_default": module.third, "text": module.text}
    )

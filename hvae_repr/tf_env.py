"""TensorFlow, imported once with this project's settings.

Every module of the project that needs TensorFlow imports it from here
(`from hvae_repr.tf_env import tf`), so that the first import happens quietly:
TensorFlow 2.21 writes start-up lines to stderr before its logging is set up
("oneDNN custom operations are on", "Could not find cuda drivers", and on
machines without a GPU "failed call to cuInit", which reads like a failure),
and TF_CPP_MIN_LOG_LEVEL no longer hides them. They are discarded by pointing
file descriptor 2 at /dev/null while TensorFlow loads and looks for GPUs,
unless the user set TF_CPP_MIN_LOG_LEVEL, in which case nothing is hidden.
Thread counts can still be set afterwards: no op has run yet.

Keras 3, which TensorFlow imports, also imports IPython, matplotlib and scikit-learn when they are
installed, for integrations this project does not use (the notebook display of its file editor, its image
gallery plot, its scikit-learn wrappers): 1.5 s of CPU at every start of a training process here, a quarter
of it. The project's own programs (hvae_repr.cli.run: hvae-train, a sweep's points, ...) keep them out
while TensorFlow loads; imported afterwards they work as usual, only those Keras integrations find them
missing in that process. A user's process that imports hvae_repr as a library is left as it is.
"""
import os
import sys

import hvae_repr


KERAS_EXTRAS = ("IPython", "matplotlib", "sklearn")


def _import_tensorflow():
    # None in sys.modules makes `import NAME` raise ImportError, which Keras takes for "not installed".
    kept_out = [] if not hvae_repr.PROGRAM or "keras" in sys.modules else \
        [name for name in KERAS_EXTRAS if name not in sys.modules]
    sys.modules.update(dict.fromkeys(kept_out))
    try:
        return _import_quietly()
    finally:
        for name in kept_out:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


def _import_quietly():
    if "tensorflow" in sys.modules or hvae_repr.USER_SET_TF_LOG_LEVEL:
        import tensorflow
        return tensorflow
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        import tensorflow
        tensorflow.config.list_physical_devices("GPU")  # CUDA's start-up lines come here
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)
    return tensorflow


tf = _import_tensorflow()

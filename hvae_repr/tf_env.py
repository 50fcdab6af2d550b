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
"""
import os
import sys

import hvae_repr


def _import_tensorflow():
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

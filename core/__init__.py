"""SparseLab engine: what does sparsity buy a model in size, accuracy and latency?

This package never imports streamlit. Importing it sets the process-wide switches
(the one place this happens): ``TF_USE_LEGACY_KERAS`` so that TensorFlow, when it
is imported later, serves tf-keras 2 models (tensorflow-model-optimization rejects
Keras 3 models), and ``USE_TF=0`` so that transformers does not import TensorFlow
(8 s) just to load a PyTorch model.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("USE_TF", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

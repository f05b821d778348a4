"""The code of every memberwise pyfunc model ("models from code", see ``models.artifact``).

MLflow copies this file into each logged products, coupon and send-time model and runs it
at log and at load time; it hands MLflow the wrapper of ``models.pyfunc``, whose
``load_context`` then loads the model's ``.npz`` artifact for the family named in the
model config. No object is pickled.
"""

from models.pyfunc import set_model

set_model()

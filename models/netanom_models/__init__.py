"""netanom's model pipeline: train, export (ONNX bundle) and evaluate the anomaly scorers.

Entry point: ``python -m netanom_models {train,eval,rf-sweep,if-sweep} --dataset nsl-kdd|kdd99|cic-ids2017``,
and ``train``/``eval`` with ``--dataset csv|flows --input FILE`` (a data set of one's own).
"""

import os

# Single-threaded numerics by default: reproducible results and polite on shared build
# machines. Must happen before numpy / torch are imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

#: Version of the bundle layout (manifest.json, the three ONNX files, parity.csv). 2: adds
#: manifest keys `scorer` (the normative scorer contract) and `parity`, and parity.csv. Bump on any change
#: that the Rust scorer must know about.
BUNDLE_FORMAT_VERSION = 2


class DataError(Exception):
    """An expected, user-facing error (bad or missing input). Printed without a traceback."""

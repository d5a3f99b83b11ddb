"""The defences BKI is compared with, each returning a `bki_tf.detection.DetectionResult`.

`activation_clustering` (Chen et al. 2018), `spectral_signatures` (Tran et al.
2018), `strip` (Gao et al. 2019, for text) and `pruning` (l-inf neuron pruning).
"""

"""Active acquisition (Mi et al., "Learning guided electron microscopy with active acquisition", MICCAI 2020).

An initial cheap scan is reconstructed, an estimator predicts where that reconstruction is wrong, and a weighted
determinantal point process (WDPP) picks rescan pixels that are both salient and spread out. Modules: ``scan``
(initial-scan specs), ``wdpp`` (samplers), ``error_estimation`` (error maps), ``pipeline`` (the whole loop as a job),
``export`` (bitmap/CSV for the microscope).
"""

"""diffad: diffusion-model anomaly detection with p-values.

Sub-packages
------------
diffusion
    Noise schedules, forward noising, DDPM/DDIM reverse steps and the piecewise-linear U-Net.
tabular
    PyOD-compatible tabular detectors (DTE-NP, DTE-IG, DTE-C, DDPM baseline).
image
    Image anomaly localisation (reconstruction, L1/SSIM/SSIM-ens maps).
inference
    Conformal p-values, Benjamini-Hochberg and selective inference (DAL-Test).
data
    Loaders for ADBench files and image folders, synthetic anomalies.
metrics
    Detection and localisation metrics.
"""

__version__ = "0.1.0"

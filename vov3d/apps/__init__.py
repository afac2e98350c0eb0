"""Applications built on the engine and the models: export, feature extraction, Grad-CAM."""

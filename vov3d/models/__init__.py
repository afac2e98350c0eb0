"""Video models: registry, builder and every registered family."""

from vov3d.models.build import MODEL_REGISTRY, build_model, get_model_class  # noqa: F401

# Importing the families registers them.
from vov3d.models import p3d, resnet3d, s3d, smallbig, vov3d, x3d  # noqa: F401,E402
from vov3d.models.base import VideoClassifier  # noqa: F401,E402
from vov3d.models.variants import create, get_preprocessing, list_models  # noqa: F401,E402

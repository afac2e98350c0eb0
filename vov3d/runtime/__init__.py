"""What makes a built model fast on the device at hand (see vov3d/runtime/prepare.py).

    from vov3d.runtime import prepare_for_inference
    fast = prepare_for_inference(model)       # eval-only copy; `auto` levers measured on first call

Layers: levers.py (keys -> candidates), autotune.py (measure, pick, cache), layout.py (clip memory
format, batches), conv_routes.py (Conv3d forwards), fold_bn.py, fused_units.py + kernels.py + csrc/
(the fused CPU kernel), batchnorm.py (the training BN kernel), heap.py (freed memory kept between CPU
train steps), eval_path.py (plain model.eval()), prepare.py (prepare_for_training / prepare_for_inference).
"""

from vov3d.runtime.layout import clip_memory_format, empty_clip_batch, to_model_format  # noqa: F401
from vov3d.runtime.prepare import InferenceModel, prepare_for_inference, prepare_for_training  # noqa: F401

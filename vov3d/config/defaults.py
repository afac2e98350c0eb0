"""The config tree of vov3d: every key vov3d reads, its default, one line on what it does, and the values
it accepts (``Key(default, ...)``; keys given as a plain value accept any value of the default's type).

PySlowFast's and the official VoV3D code's other keys (AVA, detection, non-local, SlowFast, multigrid,
webcam demo, TensorBoard visualisation, ...) are not here: they live in ``vov3d/config/compat.py``, so
their YAML files still load while the tree that is printed, saved and stored in checkpoints holds only
what vov3d uses. ``vov3d/config/load.py`` reads YAML files and checks values against this file.
"""

from yacs.config import CfgNode as _YacsCfgNode

from vov3d.config.merge import declare_optional_numbers
from vov3d.config.node import CfgNode, Key


# MODEL.ARCH of each model vov3d builds -> its MODEL.MODEL_NAME. validate() refuses a config whose ARCH and
# MODEL_NAME name different models, and PySlowFast's other architectures (compat.PYSLOWFAST_ARCHS).
ARCH_MODELS = {"vov3d": "VoV3D", "x3d": "X3D", "s3d": "S3D", "p3d": "P3D", "smallbig": "SmallBigNet",
               "resnet3d": "ResNet3D"}
UNITS = ("d2plus1d", "d1plus2d", "dw3d", "r2plus1d", "conv3d")  # T-OSA / X3D bottleneck middles (models/units.py)
S3D_ENDPOINTS = ("Conv2d_2c_3x3", "Mixed_3b", "Mixed_3c", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e",
                 "Mixed_4f", "Mixed_5b", "Mixed_5c")

CONFIG_VERSION = 1  # bumped when keys are renamed or change meaning

_C = CfgNode()
_C.VERSION = CONFIG_VERSION  # layout of this tree; a config that sets another VERSION is refused by validate()

# ---------------------------------------------------------------------------- #
# Batch norm
# ---------------------------------------------------------------------------- #
_C.BN = CfgNode()
_C.BN.USE_PRECISE_STATS = False  # recompute BN running stats on training data before each evaluation
_C.BN.NUM_BATCHES_PRECISE = Key(200, ge=1)  # batches used by precise BN
_C.BN.WEIGHT_DECAY = Key(0.0, ge=0.0)  # weight decay of BatchNorm affine parameters
_C.BN.NORM_TYPE = Key("batchnorm", one_of=("batchnorm", "sync_batchnorm"))  # sync_batchnorm: torch SyncBatchNorm over all processes
# Official VoV3D puts a parameter in the no-decay BN group when its *name* contains "bn", which misses
# the BNs inside D(2+1)D units (named a.1 / c.1). False (default): every BatchNorm parameter is in the
# BN group. True: the official name rule, to reproduce published recipes exactly.
_C.BN.OFFICIAL_NAME_GROUPING = False

# ---------------------------------------------------------------------------- #
# Training
# ---------------------------------------------------------------------------- #
_C.TRAIN = CfgNode()
_C.TRAIN.ENABLE = True  # run training
_C.TRAIN.DATASET = "kinetics"  # registered dataset name: ssv1 | ssv2 | kinetics | demo (or one you register)
_C.TRAIN.BATCH_SIZE = Key(64, ge=1)  # total batch over all processes (a multiple of their number)
_C.TRAIN.EVAL_PERIOD = Key(10, ge=0)  # validate every N epochs (single view) and after the last; 0: never
_C.TRAIN.CHECKPOINT_PERIOD = Key(10, ge=1)  # save a checkpoint every N epochs (and after the last, and on a stop signal)
_C.TRAIN.AUTO_RESUME = True  # resume from the newest verified checkpoint in OUTPUT_DIR/checkpoints (must fit exactly)
_C.TRAIN.CHECKPOINT_FILE_PATH = ""  # initial weights (fine-tuning); ignored when resuming
_C.TRAIN.CHECKPOINT_EPOCH_RESET = False  # start from epoch 0 after loading CHECKPOINT_FILE_PATH
_C.TRAIN.CHECKPOINT_CLEAR_NAME_PATTERN = ()  # prefixes stripped from checkpoint keys (e.g. "module.")
_C.TRAIN.MIXED_PRECISION = False  # autocast forward/loss (CUDA; bfloat16 also works on CPU)
_C.TRAIN.MIXED_PRECISION_DTYPE = Key("bfloat16", one_of=("bfloat16", "float16"))  # float16 adds a GradScaler
_C.TRAIN.GRAD_ACCUM_STEPS = Key(1, ge=1)  # loader batches per optimizer step (effective batch = BATCH_SIZE x this)
_C.TRAIN.BEST_CHECKPOINT = True  # keep checkpoints/checkpoint_best.pyth of the best validation top-1
_C.TRAIN.DATA_TIME_WARN_FRACTION = Key(0.5, ge=0.0)  # warn when waiting for data exceeds this fraction of step time
_C.TRAIN.EMA = CfgNode()
_C.TRAIN.EMA.ENABLE = False  # keep an exponential moving average of the weights
_C.TRAIN.EMA.DECAY = Key(0.9998, gt=0.0, lt=1.0)  # EMA decay per optimizer step
_C.TRAIN.EMA.EVAL = True  # validate / test the EMA weights (when ENABLE)

# ---------------------------------------------------------------------------- #
# Testing
# ---------------------------------------------------------------------------- #
_C.TEST = CfgNode()
_C.TEST.ENABLE = True  # run the multi-view test after training
_C.TEST.DATASET = "kinetics"  # registered dataset name
_C.TEST.BATCH_SIZE = Key(8, ge=1)  # videos per test batch over all processes (a multiple of their number)
_C.TEST.CHECKPOINT_FILE_PATH = ""  # weights to test; default: the newest in OUTPUT_DIR/checkpoints
_C.TEST.NUM_ENSEMBLE_VIEWS = Key(10, ge=1)  # temporal clips per video
_C.TEST.NUM_SPATIAL_CROPS = Key(3, one_of=(1, 3))  # spatial crops per clip: 1 (centre) or 3 (both ends and centre)
_C.TEST.SAVE_RESULTS_PATH = ""  # file name (in OUTPUT_DIR) for per-view scores; default test_scores.pt
_C.TEST.CLIPS_PER_FORWARD = Key(0, ge=0)  # max clips per test forward (0: the per-process TEST.BATCH_SIZE)
_C.TEST.SAVE_SCORES = True  # save per-view softmax scores (TEST.SAVE_RESULTS_PATH or test_scores.pt)

# ---------------------------------------------------------------------------- #
# Model
# ---------------------------------------------------------------------------- #
_C.MODEL = CfgNode()
_C.MODEL.ARCH = ""  # model family (PySlowFast's key): a key of ARCH_MODELS agreeing with MODEL_NAME; empty: MODEL_NAME decides
_C.MODEL.MODEL_NAME = "VoV3D"  # registered model name: VoV3D | X3D | S3D | P3D | SmallBigNet | ResNet3D | ...
_C.MODEL.NUM_CLASSES = Key(400, ge=1)  # classifier outputs
_C.MODEL.LOSS_FUNC = "cross_entropy"  # cross_entropy | bce | bce_logit | soft_cross_entropy (or one you register)
_C.MODEL.DROPOUT_RATE = Key(0.5, ge=0.0, lt=1.0)  # dropout before the classifier
# Recompute each residual block's activations in the backward pass instead of keeping them (VoV3D, X3D and
# the ResNet families: less training memory for about one more forward pass); BN running statistics are
# updated once per step, as without it (vov3d/models/stages.py).
_C.MODEL.ACT_CHECKPOINT = False
_C.MODEL.FC_INIT_STD = Key(0.01, ge=0.0)  # std of the classifier weight init
_C.MODEL.HEAD_ACT = Key("softmax", one_of=("softmax", "sigmoid"))  # eval-mode activation of the head
# Memory layout of weights and clips: "auto" (measured on this machine at first use and cached,
# vov3d/runtime/autotune.py), "channels_last_3d" or "contiguous" (plain NCTHW).
_C.MODEL.MEMORY_FORMAT = Key("auto", one_of=("auto", "channels_last_3d", "contiguous"))
_C.MODEL.COMPILE = False  # wrap the model in torch.compile (compile time is paid every run)
_C.MODEL.FOLD_BN = True  # test/export run a copy with BatchNorm folded into the preceding conv (measured faster)
# Depthwise 1xkxk / kx1x1 convs as: auto (measured) | conv2d | conv3d | kernel (the C kernel on CPU
# channels-last clips, forward and backward: vov3d/runtime/depthwise.py).
_C.MODEL.DEPTHWISE_IMPL = Key("auto", one_of=("auto", "conv2d", "conv3d", "kernel"))
# 1x1x1 convs of channels-last routes as: auto (measured) | conv | matmul (one matrix product over the
# channels-last rows; vov3d/runtime/conv_routes.py: PointwiseConv3d).
_C.MODEL.POINTWISE_IMPL = Key("auto", one_of=("auto", "conv", "matmul"))
# Training BatchNorm of channels-last CPU clips with <= 64 channels as: auto (measured) | stock | kernel (a C
# kernel, vov3d/runtime/batchnorm.py; an error without a C compiler). Eval and test copies are not affected.
_C.MODEL.BATCHNORM_IMPL = Key("auto", one_of=("auto", "stock", "kernel"))
# CPU training: freed memory stays in the heap for the next step instead of going back to the OS and
# being faulted in again (glibc; vov3d/runtime/heap.py): auto (on when a train step measures > 1024
# page faults) | on | off. Process-wide: the process keeps its peak memory, as CUDA's allocator does.
_C.MODEL.CPU_KEEP_HEAP = Key("auto", one_of=("auto", "on", "off"))
_C.MODEL.CUDNN_BENCHMARK = True  # torch.backends.cudnn.benchmark on CUDA (autotuned conv algorithms)
# Autocast in test/val: auto (measured on CUDA, off on CPU) | off | bfloat16 | float16.
_C.MODEL.INFERENCE_AMP = Key("auto", one_of=("auto", "off", "bfloat16", "float16"))
# D(2+1)D bottlenecks (VoV3D units, X3D with X3D.UNIT d2plus1d) of the BN-folded test copy run as one
# fused C kernel on CPU (vov3d/runtime/fused_units.py): auto (kept when measured faster; stock ops
# without a C compiler) | on (an error without a compiler) | off. Needs MODEL.FOLD_BN; not with COMPILE.
_C.MODEL.CPU_FUSED_UNITS = Key("auto", one_of=("auto", "on", "off"))
# model.eval() forwards without grad run a prepared inference copy of the built model (levers as above,
# fp32), rebuilt when the weights change (vov3d/runtime/eval_path.py); env VOV3D_ACCELERATED_EVAL=0 also
# turns it off. The engine's test path prepares its own copy either way.
_C.MODEL.ACCELERATED_EVAL = True

# ---------------------------------------------------------------------------- #
# ResNet options (PySlowFast names, read by X3D, VoV3D and the ResNet-style zoo models)
# ---------------------------------------------------------------------------- #
_C.RESNET = CfgNode()
_C.RESNET.TRANS_FUNC = "bottleneck_transform"  # X3D: x3d_transform or bottleneck_transform (both build X3D's block)
_C.RESNET.WIDTH_PER_GROUP = Key(64, ge=1)  # base width of P3D and SmallBigNet (smaller: tiny test models)
_C.RESNET.ZERO_INIT_FINAL_BN = False  # zero-init gamma of each block's final BN
_C.RESNET.DEPTH = Key(50, ge=1)  # ResNet depth of the zoo models (18, 34, 50, 101, 152 as each supports)

# ---------------------------------------------------------------------------- #
# X3D
# ---------------------------------------------------------------------------- #
_C.X3D = CfgNode()
_C.X3D.WIDTH_FACTOR = Key(1.0, gt=0.0)  # stem and stage width multiplier
_C.X3D.DEPTH_FACTOR = Key(1.0, gt=0.0)  # block count multiplier over (1, 2, 5, 3), rounded up
_C.X3D.BOTTLENECK_FACTOR = Key(1.0, gt=0.0)  # inner width of a block over its output width
_C.X3D.DIM_C5 = Key(2048, ge=1)  # width of the head's lin_5 (also used by the VoV3D head)
_C.X3D.DIM_C1 = Key(12, ge=1)  # base stem width
_C.X3D.SCALE_RES2 = False  # also scale res2's width by WIDTH_FACTOR
_C.X3D.BN_LIN5 = False  # BN after lin_5 in the head (X3D and VoV3D)
_C.X3D.CHANNELWISE_3x3x3 = True  # depthwise 3x3x3 in the bottleneck (False: dense 3x3x3)
# Middle of the X3D bottleneck: dw3d (X3D), d2plus1d (VoV3D paper Table 4, last row), d1plus2d,
# r2plus1d, conv3d. See vov3d/models/units.py.
_C.X3D.UNIT = Key("dw3d", one_of=UNITS)
# BN after the shortcut conv of a block that strides but keeps its width (res2 block 0). False builds
# PyTorchVideo's X3D (48 fewer parameters for X3D-S/M/L), whose weights then load (see X3D.convert_state_dict).
_C.X3D.STRIDED_SHORTCUT_BN = True

# ---------------------------------------------------------------------------- #
# VoV3D
# ---------------------------------------------------------------------------- #
_C.VOV3D = CfgNode()
_C.VOV3D.DEPTH = Key(31, one_of=(31, 70))  # 31 (VoV3D-M: blocks 1,2,3,2) or 70 (VoV3D-L: blocks 1,2,5,3)
_C.VOV3D.TRANS_FUNC = "t_osa_2plus1_transform"  # the official block name (T-OSA)
_C.VOV3D.NUM_CONV = Key(5, ge=1)  # units per T-OSA block
_C.VOV3D.INNER_CH = Key(40, ge=1)  # base width: 40 (M) or 48 (L)
_C.VOV3D.INNER_MULTIPLIER = Key([1, 2, 4, 8], length=4, gt=0)  # unit inner width per stage, over INNER_CH
_C.VOV3D.OUT_MULTIPLIER = Key([0.5, 1.0, 2, 4], length=4, gt=0)  # stage output width, over INNER_CH
_C.VOV3D.SPATIAL_STRIDES = [[2], [2], [2], [2]]  # as in the official code, only [0][0] is read, for every stage
# Unit of the T-OSA chain: d2plus1d (official), d1plus2d, dw3d, r2plus1d, conv3d (paper Table 4).
_C.VOV3D.UNIT = Key("d2plus1d", one_of=UNITS)

# ---------------------------------------------------------------------------- #
# Zoo models (S3D, P3D, SmallBigNet, R(2+1)D, CSN)
# ---------------------------------------------------------------------------- #
_C.S3D = CfgNode()
_C.S3D.GATING = False  # S3D-G: self-gating after Conv2d_2c and each Inception branch
_C.S3D.GATING_STARTAT = Key("Conv2d_2c_3x3", one_of=S3D_ENDPOINTS)  # first gated endpoint (TF-slim gating_startat)
_C.S3D.TEMPORAL_CONV_STARTAT = Key("Conv2d_2c_3x3", one_of=S3D_ENDPOINTS)  # endpoints before it: no temporal conv (top-heavy)
_C.S3D.TEMPORAL_CONV_ENDAT = Key("Mixed_5c", one_of=S3D_ENDPOINTS)  # endpoints after it: no temporal conv (bottom-heavy)
_C.S3D.SEPARABLE = True  # separable 1xkxk + kx1x1 convs (S3D); False: full kxkxk (I3D)
_C.S3D.FIRST_CONV = Key("separable", one_of=("separable", "full"))  # Conv2d_1a: torchvision 1x7x7 + 7x1x1 | TF-slim kx7x7
_C.S3D.FIRST_TEMPORAL_KERNEL = Key(7, ge=1)  # temporal kernel of Conv2d_1a (TF-slim default 3, torchvision 7)
_C.S3D.TEMPORAL_BN = True  # BN after the temporal conv (torchvision); False: bias, no BN (TF-slim)
_C.P3D = CfgNode()
_C.P3D.DEPTH = Key(199, one_of=(63, 131, 199))  # 63 (ResNet-50 layout), 131 (ResNet-101) or 199 (ResNet-152, official)
_C.P3D.UNIT_CYCLE = "ABC"  # P3D unit types (letters A, B, C) cycled over res2-res4 by global block index
_C.SMALLBIG = CfgNode()
_C.SMALLBIG.EXTRA = False  # add the "extra" max-pooled global gating before each SmallBig unit
_C.SMALLBIG.BIG_VIEW = True  # False: the plain C2D ResNet baseline of the official code
_C.RESNET3D = CfgNode()
_C.RESNET3D.ARCH = Key("r2plus1d", one_of=("r2plus1d", "r3d", "mc3", "ir_csn", "ip_csn"))  # depth: RESNET.DEPTH
_C.RESNET3D.SHARED_MID_WIDTH = False  # R(2+1)D: one mid width per block (torchvision), not per conv
_C.RESNET3D.STEM_POOL = False  # max pool 1x3x3 stride (1,2,2) after a 3x7x7 stem (CSN at 224)

# ---------------------------------------------------------------------------- #
# Data
# ---------------------------------------------------------------------------- #
_C.DATA = CfgNode()
_C.DATA.PATH_TO_DATA_DIR = ""  # folder with the annotation files
_C.DATA.PATH_LABEL_SEPARATOR = " "  # separator of PySlowFast "path label" lists
_C.DATA.PATH_PREFIX = ""  # folder with the videos / frame folders (empty: PATH_TO_DATA_DIR)
_C.DATA.NUM_FRAMES = Key(8, ge=1)  # frames per clip
_C.DATA.SAMPLING_RATE = Key(8, ge=1)  # frame stride of dense (Kinetics) sampling
_C.DATA.MEAN = Key([0.45, 0.45, 0.45], length=3)  # per-channel mean, in the channel order fed to the model
_C.DATA.STD = Key([0.225, 0.225, 0.225], length=3, gt=0.0)  # per-channel std
_C.DATA.INPUT_CHANNEL_NUM = Key([3, 3], one_of=([3], [3, 3]))  # channels per pathway (vov3d models have one)
_C.DATA.TRAIN_JITTER_SCALES = Key([256, 320], length=2, ge=1)  # short-side range of train-time scale jitter
_C.DATA.TRAIN_CROP_SIZE = Key(224, ge=1)  # train crop
_C.DATA.TEST_CROP_SIZE = Key(256, ge=1)  # test short side and crop
_C.DATA.TARGET_FPS = Key(30, gt=0)  # frame rate that SAMPLING_RATE refers to
# Decoder: pyav | torchcodec | torchvision (PySlowFast's name; torchvision no longer decodes video: pyav, with a warning).
_C.DATA.DECODING_BACKEND = Key("pyav", one_of=("pyav", "torchcodec", "torchvision"))
_C.DATA.INV_UNIFORM_SAMPLE = False  # sample the jitter scale uniformly in 1/scale
_C.DATA.RANDOM_FLIP = True  # horizontal flip at train time
_C.DATA.ENSEMBLE_METHOD = Key("sum", one_of=("sum", "max"))  # how views are combined per video (of softmax scores)
_C.DATA.REVERSE_INPUT_CHANNEL = False  # feed BGR instead of RGB
# ssv1 class index: file (labels-CSV line order: VoV3D, MMAction2) | sorted (TSM; = SSv2 indices).
_C.DATA.SS_LABEL_ORDER = Key("file", one_of=("file", "sorted"))
# SS test view k of K: uniform ((k+0.5)/K of each segment) | middle (PySlowFast/VoV3D).
_C.DATA.SS_TEST_VIEW_OFFSET = Key("uniform", one_of=("uniform", "middle"))
# ssv2 media: auto | video (<id>.webm) | frames (PySlowFast frame lists {train,val}.csv).
_C.DATA.SS_SOURCE = Key("auto", one_of=("auto", "video", "frames"))
_C.DATA.FRAME_TEMPLATE = "{:05d}.jpg"  # name of frame i (1-based) in an SSv1 frame folder
_C.DATA.TRAIN_ANNOTATION = ""  # train annotation file (absolute or in PATH_TO_DATA_DIR); empty: the released train file
_C.DATA.VAL_ANNOTATION = ""  # val annotation file; empty: the released validation file
_C.DATA.TEST_ANNOTATION = ""  # test annotation file; empty: the released validation file (test labels are not public)
_C.DATA.MAX_BAD_SAMPLE_RETRIES = Key(10, ge=0)  # train/val: substitutes tried for a bad video before stopping
# A video with fewer decodable frames (in a clip's span) is bad data. < 0 (default): any decodable video
# is used, a clip of a shorter one repeats frames, as the official implementation samples (segments of a
# 31-frame SSv1 video at 32 frames; PySlowFast's clamped dense indices). NUM_FRAMES rejects short videos.
_C.DATA.MIN_VIDEO_FRAMES = -1
_C.DATA.DECODE_THREADS = Key(0, ge=0)  # decoder threads per video (0: 1 in loader workers, FFmpeg's choice in-process)
# Whole decoded videos kept in memory per loader process, in MB (0: none). Segment (index) sampling of
# video files only: for datasets that fit decoded (the demo), where decoding each epoch again costs more
# CPU than the model (vov3d/datasets/decode.py: DecodedVideoCache). Each worker holds its own.
_C.DATA.DECODED_CACHE_MB = Key(0, ge=0)
# auto (the dataset's own: segment for SS, dense for Kinetics) | segment | dense.
_C.DATA.TEMPORAL_SAMPLING = Key("auto", one_of=("auto", "segment", "dense"))

# ---------------------------------------------------------------------------- #
# Data loader
# ---------------------------------------------------------------------------- #
_C.DATA_LOADER = CfgNode()
_C.DATA_LOADER.NUM_WORKERS = Key(8, ge=0)  # loader worker processes per process
_C.DATA_LOADER.PIN_MEMORY = True  # pin host memory (only when CUDA is used)

# ---------------------------------------------------------------------------- #
# Solver
# ---------------------------------------------------------------------------- #
_C.SOLVER = CfgNode()
_C.SOLVER.BASE_LR = Key(0.1, gt=0.0)  # learning rate at TRAIN.BATCH_SIZE (after shard scaling)
_C.SOLVER.LR_POLICY = Key("cosine", one_of=("cosine", "steps_with_relative_lrs", "constant"))  # learning-rate schedule
_C.SOLVER.COSINE_END_LR = Key(0.0, ge=0.0)  # final cosine learning rate (at most BASE_LR)
_C.SOLVER.COSINE_AFTER_WARMUP = False  # newer PySlowFast: the cosine starts at its peak after warm-up
_C.SOLVER.STEPS = Key([], ge=0)  # steps_with_relative_lrs: increasing epoch boundaries starting at 0
_C.SOLVER.LRS = Key([], ge=0.0)  # LR multiple of each STEPS interval (longer than STEPS is fine, as in PySlowFast)
_C.SOLVER.MAX_EPOCH = Key(300, ge=1)  # training epochs
_C.SOLVER.MOMENTUM = Key(0.9, ge=0.0)  # SGD momentum
_C.SOLVER.DAMPENING = Key(0.0, ge=0.0)  # SGD dampening
_C.SOLVER.NESTEROV = True  # Nesterov momentum
_C.SOLVER.WEIGHT_DECAY = Key(1e-4, ge=0.0)  # weight decay of non-BN parameters
_C.SOLVER.WARMUP_EPOCHS = Key(0.0, ge=0.0)  # linear warm-up length in epochs
_C.SOLVER.WARMUP_START_LR = Key(0.01, ge=0.0)  # learning rate at iteration 0 of the warm-up
_C.SOLVER.OPTIMIZING_METHOD = Key("sgd", one_of=("sgd", "adam", "adamw"))  # optimizer
# One fused kernel per step for all parameters where torch has one for their device and dtype (CPU and
# CUDA in torch >= 2.4), else torch's loop over parameters. Same update, same state_dict; on CPU the
# loop's step took 12.9 ms for VoV3D-M's 542 tensors and the fused one 2.8 ms (AMD EPYC Zen 3, 2 threads).
_C.SOLVER.FUSED_UPDATE = True
_C.SOLVER.BASE_LR_SCALE_NUM_SHARDS = False  # multiply BASE_LR, WARMUP_START_LR, COSINE_END_LR by NUM_SHARDS
_C.SOLVER.LABEL_SMOOTHING = Key(0.0, ge=0.0, lt=1.0)  # label smoothing of the cross-entropy loss
# Gradient clipping before each optimizer step (after unscaling AMP gradients). As in PySlowFast, None is off
# and CLIP_GRAD_VAL wins when both are set.
_C.SOLVER.CLIP_GRAD_VAL = Key(None, gt=0.0, optional=True)  # clamp every gradient element to [-VAL, VAL]
_C.SOLVER.CLIP_GRAD_L2NORM = Key(None, gt=0.0, optional=True)  # rescale gradients to this global L2 norm at most

# ---------------------------------------------------------------------------- #
# RandAugment and random erasing of training clips (PySlowFast names and defaults; vov3d/datasets/augment.py)
# ---------------------------------------------------------------------------- #
_C.AUG = CfgNode()
_C.AUG.ENABLE = False  # RandAugment (AA_TYPE) and random erasing (RE_PROB) of training clips
_C.AUG.AA_TYPE = "rand-m9-mstd0.5-inc1"  # RandAugment: m magnitude (0-10), n ops (2), mstd magnitude noise, inc1 increasing ops; "": none
_C.AUG.INTERPOLATION = Key("bicubic", one_of=("bicubic", "bilinear", "nearest", "random"))  # resampling of the geometric ops
_C.AUG.RE_PROB = Key(0.25, ge=0.0, le=1.0)  # probability of random erasing per clip (0: off)
_C.AUG.RE_MODE = Key("pixel", one_of=("pixel", "rand", "const"))  # erased values: per-pixel noise, per-channel noise, 0
_C.AUG.RE_COUNT = Key(1, ge=1)  # up to this many erased boxes per clip

# ---------------------------------------------------------------------------- #
# Mixup / CutMix (batch level; PySlowFast names and defaults; vov3d/datasets/mixup.py)
# ---------------------------------------------------------------------------- #
_C.MIXUP = CfgNode()
_C.MIXUP.ENABLE = False  # mix training batches (off by default, and for Something-Something as in the VoV3D paper)
_C.MIXUP.ALPHA = Key(0.8, ge=0.0)  # mixup Beta(alpha, alpha); 0: no mixup
_C.MIXUP.CUTMIX_ALPHA = Key(1.0, ge=0.0)  # CutMix Beta(alpha, alpha); 0: no CutMix
_C.MIXUP.PROB = Key(1.0, ge=0.0, le=1.0)  # probability that a batch is mixed at all
_C.MIXUP.SWITCH_PROB = Key(0.5, ge=0.0, le=1.0)  # with both alphas > 0: probability of CutMix instead of mixup
_C.MIXUP.LABEL_SMOOTH_VALUE = Key(0.1, ge=0.0, lt=1.0)  # label smoothing of the mixed soft targets

# ---------------------------------------------------------------------------- #
# Multigrid training (PySlowFast names and defaults; vov3d/datasets/multigrid.py)
# ---------------------------------------------------------------------------- #
_C.MULTIGRID = CfgNode()
_C.MULTIGRID.EPOCH_FACTOR = Key(1.5, gt=0.0)  # epochs trained over the plain schedule's (fewer iterations each)
_C.MULTIGRID.SHORT_CYCLE = False  # per iteration: crops SHORT_CYCLE_FACTORS x TRAIN_CROP_SIZE, then the full crop
_C.MULTIGRID.SHORT_CYCLE_FACTORS = Key([0.5, 0.5**0.5], length=2, gt=0.0, le=1.0)  # the two smaller crops, over the default
_C.MULTIGRID.LONG_CYCLE = False  # per phase: (frames, crop) from LONG_CYCLE_FACTORS, batch grown to match, LR scaled
# (frames, crop) factors of the long-cycle phases, over DATA.NUM_FRAMES / TRAIN_CROP_SIZE; the last should be (1, 1).
_C.MULTIGRID.LONG_CYCLE_FACTORS = [[0.25, 0.5**0.5], [0.5, 0.5**0.5], [0.5, 1.0], [1.0, 1.0]]
_C.MULTIGRID.EVAL_FREQ = Key(3, ge=1)  # with LONG_CYCLE: validations (and checkpoints) per phase

# ---------------------------------------------------------------------------- #
# Run
# ---------------------------------------------------------------------------- #
_C.NUM_GPUS = Key(1, ge=0)  # GPUs per machine (0: CPU)
_C.NUM_SHARDS = Key(1, ge=1)  # machines
_C.SHARD_ID = Key(0, ge=0)  # index of this machine (below NUM_SHARDS)
_C.OUTPUT_DIR = "./tmp"  # where checkpoints, logs and results go
_C.RNG_SEED = 1  # seed of python, numpy and torch
_C.LOG_PERIOD = Key(10, ge=1)  # iterations between log lines
_C.LOG_MODEL_INFO = True  # log params and GFLOPs at start-up
_C.DIST_BACKEND = Key("nccl", one_of=("nccl", "gloo"))  # distributed backend on GPUs (gloo is always used on CPU)
_C.DIST_STARTUP_TIMEOUT_MINUTES = Key(30.0, gt=0.0)  # how long start-up collectives (rendezvous, setup) wait for every process
_C.DIST_TIMEOUT_MINUTES = Key(10.0, gt=0.0)  # how long a collective waits for a silent process once training runs, then the job stops

_C.BENCHMARK = CfgNode()
_C.BENCHMARK.NUM_EPOCHS = Key(5, ge=1)  # epochs of tools/benchmark.py --mode data

_C.TENSORBOARD = CfgNode()
_C.TENSORBOARD.ENABLE = False  # write TensorBoard scalars
_C.TENSORBOARD.LOG_DIR = ""  # events folder inside OUTPUT_DIR (default: runs-<dataset>)
_C.TENSORBOARD.CONFUSION_MATRIX = CfgNode()
_C.TENSORBOARD.CONFUSION_MATRIX.ENABLE = False  # also log the test confusion matrix to TensorBoard
_C.TENSORBOARD.CONFUSION_MATRIX.FIGSIZE = Key([8, 8], length=2, gt=0)  # figure size of the confusion matrix

_C.DEMO = CfgNode()
_C.DEMO.LABEL_FILE_PATH = ""  # JSON {class name: index} used by tools/demo_net.py to name predictions

# Demo dataset (TRAIN.DATASET demo): generated once into ROOT, read as SSv2.
_C.DEMO_DATA = CfgNode()
_C.DEMO_DATA.ROOT = "~/.cache/vov3d/demo-ssv2"  # where the generated videos and JSON files go
_C.DEMO_DATA.TRAIN_PER_CLASS = Key(48, ge=1)  # training videos per class
_C.DEMO_DATA.VAL_PER_CLASS = Key(20, ge=1)  # validation (= test) videos per class
_C.DEMO_DATA.SEED = 0  # generator seed
_C.DEMO_DATA.HEIGHT = Key(64, ge=16)  # frame height in pixels (widths vary from 64 to 80)

# What a recipe's documentation promises (the worst of its measured runs): the end-of-run summary prints
# the figures reached next to these. 0 / "": nothing documented, nothing compared.
_C.DOCUMENTED = CfgNode()
_C.DOCUMENTED.TOP1_ACC = Key(0.0, ge=0.0, le=100.0)  # documented multi-view test top-1 (%)
_C.DOCUMENTED.WALL_MINUTES = Key(0.0, ge=0.0)  # documented wall time of the whole run, warm data cache (minutes)
_C.DOCUMENTED.MACHINE = ""  # where the documented figures were measured (CPU model, cores)


def _take_rules(node, prefix=""):
    """Replaces every Key in the tree by its default; returns {key path: Key}."""
    rules = {}
    for name, value in list(node.items()):
        path = prefix + name
        if isinstance(value, _YacsCfgNode):
            rules.update(_take_rules(value, path + "."))
        elif isinstance(value, Key):
            node[name] = value.default
            rules[path] = value
    return rules


RULES = _take_rules(_C)
declare_optional_numbers(k for k, rule in RULES.items() if rule.optional)


def get_cfg():
    """Returns a fresh copy of the default config tree."""
    return _C.clone()

"""The single config tree of vov3d: every key, its default, and one line on what it does.

The tree is a superset of the official VoV3D / PySlowFast tree, so their YAML files merge unchanged.
Keys that belong to features vov3d does not implement (AVA, detection, multigrid, non-local, ...) are
accepted so that official files load; setting one of them to a non-default value logs a warning that
names the key (see ``UNIMPLEMENTED_KEYS`` and ``warn_unimplemented``).
"""

import logging
import os

from yacs.config import CfgNode as _YacsCfgNode

logger = logging.getLogger(__name__)


class CfgNode(_YacsCfgNode):
    """A yacs node whose merge errors name the offending key and where it came from."""

    def merge_from_file(self, cfg_filename):
        if not os.path.isfile(cfg_filename):
            raise FileNotFoundError(f"Config file not found: {cfg_filename}")
        with open(cfg_filename, "r") as f:
            loaded = self.load_cfg(f)
        base = loaded.pop("_BASE_", None) if isinstance(loaded, dict) else None
        if base:
            # A relative _BASE_ is resolved against the including file, as detectron2 does.
            base_path = base if os.path.isabs(base) else os.path.join(os.path.dirname(cfg_filename), base)
            self.merge_from_file(base_path)
        try:
            self.merge_from_other_cfg(loaded)
        except (KeyError, ValueError) as e:
            raise type(e)(f"{e.args[0] if e.args else e} (in config file {cfg_filename})") from None

    def merge_from_list(self, cfg_list):
        if len(cfg_list) % 2 != 0:
            raise ValueError(
                f"Command-line overrides must be KEY VALUE pairs; got an odd number: {list(cfg_list)}"
            )
        try:
            super().merge_from_list(cfg_list)
        except (KeyError, ValueError, AssertionError) as e:
            msg = f"{e.args[0] if e.args else e} (on the command line)"
            # yacs reports an unknown key as an AssertionError; make it a KeyError, as for files.
            raise (KeyError if "Non-existent" in msg else type(e))(msg) from None


_C = CfgNode()

# ---------------------------------------------------------------------------- #
# Batch norm
# ---------------------------------------------------------------------------- #
_C.BN = CfgNode()
_C.BN.USE_PRECISE_STATS = False  # recompute BN running stats on training data before each evaluation
_C.BN.NUM_BATCHES_PRECISE = 200  # batches used by precise BN
_C.BN.WEIGHT_DECAY = 0.0  # weight decay of BatchNorm affine parameters
_C.BN.NORM_TYPE = "batchnorm"  # batchnorm | sync_batchnorm (torch SyncBatchNorm across all processes)
_C.BN.NUM_SPLITS = 1  # sub-batch norm splits (official key; only 1 is supported)
_C.BN.NUM_SYNC_DEVICES = 1  # official naive-sync group size; vov3d syncs over the whole world instead
# Official VoV3D puts a parameter in the no-decay BN group when its *name* contains "bn", which misses
# the BNs inside D(2+1)D units (named a.1 / c.1). False (default): every BatchNorm parameter is in the
# BN group. True: the official name rule, to reproduce published recipes exactly.
_C.BN.OFFICIAL_NAME_GROUPING = False

# ---------------------------------------------------------------------------- #
# Training
# ---------------------------------------------------------------------------- #
_C.TRAIN = CfgNode()
_C.TRAIN.ENABLE = True  # run training
_C.TRAIN.DATASET = "kinetics"  # registered dataset name: ssv1 | ssv2 | kinetics | demo
_C.TRAIN.BATCH_SIZE = 64  # total batch over all processes
_C.TRAIN.EVAL_PERIOD = 10  # validate every N epochs (single view) and after the last; int >= 0, 0 = never
_C.TRAIN.CHECKPOINT_PERIOD = 10  # save a checkpoint every N epochs (and after the last, and on a stop signal); int >= 1
_C.TRAIN.AUTO_RESUME = True  # resume from the newest verified checkpoint in OUTPUT_DIR/checkpoints (must fit exactly)
_C.TRAIN.CHECKPOINT_FILE_PATH = ""  # initial weights (fine-tuning); ignored when resuming
_C.TRAIN.CHECKPOINT_TYPE = "pytorch"  # pytorch (caffe2 is not supported)
_C.TRAIN.CHECKPOINT_INFLATE = False  # inflate 2D weights to 3D (not supported)
_C.TRAIN.CHECKPOINT_EPOCH_RESET = False  # start from epoch 0 after loading CHECKPOINT_FILE_PATH
_C.TRAIN.CHECKPOINT_CLEAR_NAME_PATTERN = ()  # prefixes stripped from checkpoint keys (e.g. "module.")

# ---------------------------------------------------------------------------- #
# Testing
# ---------------------------------------------------------------------------- #
_C.TEST = CfgNode()
_C.TEST.ENABLE = True  # run the multi-view test after training
_C.TEST.DATASET = "kinetics"  # registered dataset name
_C.TEST.BATCH_SIZE = 8  # videos per test batch over all processes
_C.TEST.CHECKPOINT_FILE_PATH = ""  # weights to test; default: the newest in OUTPUT_DIR/checkpoints
_C.TEST.NUM_ENSEMBLE_VIEWS = 10  # temporal clips per video
_C.TEST.NUM_SPATIAL_CROPS = 3  # spatial crops per clip: 1 (centre) or 3 (both ends and centre)
_C.TEST.CHECKPOINT_TYPE = "pytorch"  # pytorch
_C.TEST.SAVE_RESULTS_PATH = ""  # file name (in OUTPUT_DIR) for per-view scores; default test_scores.pt

# ---------------------------------------------------------------------------- #
# ResNet options (PySlowFast names; used by X3D, VoV3D and the ResNet-style zoo models)
# ---------------------------------------------------------------------------- #
_C.RESNET = CfgNode()
_C.RESNET.TRANS_FUNC = "bottleneck_transform"  # block transform name (x3d_transform for X3D)
_C.RESNET.NUM_GROUPS = 1  # groups of the 3x3 conv in ResNet bottlenecks
_C.RESNET.WIDTH_PER_GROUP = 64  # width of each group
_C.RESNET.STRIDE_1X1 = False  # stride on the 1x1 conv instead of the 3x3 (no effect in X3D/VoV3D)
_C.RESNET.INPLACE_RELU = True  # in-place ReLU (no effect on outputs)
_C.RESNET.ZERO_INIT_FINAL_BN = False  # zero-init gamma of each block's final BN
_C.RESNET.DEPTH = 50  # ResNet depth (zoo models)
_C.RESNET.NUM_BLOCK_TEMP_KERNEL = [[3], [4], [6], [3]]  # official key; unused by X3D/VoV3D
_C.RESNET.SPATIAL_STRIDES = [[1], [2], [2], [2]]  # per-stage spatial strides
_C.RESNET.SPATIAL_DILATIONS = [[1], [1], [1], [1]]  # per-stage spatial dilations

# ---------------------------------------------------------------------------- #
# X3D
# ---------------------------------------------------------------------------- #
_C.X3D = CfgNode()
_C.X3D.WIDTH_FACTOR = 1.0  # stem and stage width multiplier
_C.X3D.DEPTH_FACTOR = 1.0  # block count multiplier over (1, 2, 5, 3), rounded up
_C.X3D.BOTTLENECK_FACTOR = 1.0  # inner width of a block over its output width
_C.X3D.DIM_C5 = 2048  # width of the head's lin_5 (also used by the VoV3D head)
_C.X3D.DIM_C1 = 12  # base stem width
_C.X3D.SCALE_RES2 = False  # also scale res2's width by WIDTH_FACTOR
_C.X3D.BN_LIN5 = False  # BN after lin_5 in the head
_C.X3D.CHANNELWISE_3x3x3 = True  # depthwise 3x3x3 in the bottleneck (False: dense 3x3x3)
# Middle of the X3D bottleneck: dw3d (X3D), d2plus1d (VoV3D paper Table 4, last row), d1plus2d,
# r2plus1d, conv3d. See vov3d/models/units.py.
_C.X3D.UNIT = "dw3d"

# ---------------------------------------------------------------------------- #
# VoV3D
# ---------------------------------------------------------------------------- #
_C.VOV3D = CfgNode()
_C.VOV3D.DEPTH = 31  # 31 (VoV3D-M: blocks 1,2,3,2) or 70 (VoV3D-L: blocks 1,2,5,3)
_C.VOV3D.TRANS_FUNC = "t_osa_2plus1_transform"  # the official block name (T-OSA)
_C.VOV3D.NUM_CONV = 5  # units per T-OSA block
_C.VOV3D.INNER_CH = 40  # base width: 40 (M) or 48 (L)
_C.VOV3D.INNER_MULTIPLIER = [1, 2, 4, 8]  # unit inner width per stage, over INNER_CH
_C.VOV3D.OUT_MULTIPLIER = [0.5, 1.0, 2, 4]  # stage output width, over INNER_CH
_C.VOV3D.SPATIAL_STRIDES = [[2], [2], [2], [2]]  # official: only [0][0] is read, for every stage
_C.VOV3D.TEMPORAL_DILATIONS = [[1], [1], [1], [1]]  # official key with no effect
_C.VOV3D.DIM_C5 = 2048  # official key with no effect (the head reads X3D.DIM_C5)
_C.VOV3D.BN_LIN5 = False  # official key with no effect (the head reads X3D.BN_LIN5)
# Unit of the T-OSA chain: d2plus1d (official), d1plus2d, dw3d, r2plus1d, conv3d (paper Table 4).
_C.VOV3D.UNIT = "d2plus1d"

# ---------------------------------------------------------------------------- #
# Non-local (official keys; not implemented)
# ---------------------------------------------------------------------------- #
_C.NONLOCAL = CfgNode()
_C.NONLOCAL.LOCATION = [[[]], [[]], [[]], [[]]]
_C.NONLOCAL.GROUP = [[1], [1], [1], [1]]
_C.NONLOCAL.INSTANTIATION = "dot_product"
_C.NONLOCAL.POOL = [[[1, 2, 2], [1, 2, 2]]] * 4

# ---------------------------------------------------------------------------- #
# Model
# ---------------------------------------------------------------------------- #
_C.MODEL = CfgNode()
_C.MODEL.ARCH = "vov3d"  # architecture family (informational in vov3d; MODEL_NAME selects the model)
_C.MODEL.MODEL_NAME = "VoV3D"  # registered model name: VoV3D | X3D | S3D | P3D | SmallBigNet | ...
_C.MODEL.NUM_CLASSES = 400  # classifier outputs
_C.MODEL.LOSS_FUNC = "cross_entropy"  # cross_entropy | bce | bce_logit | soft_cross_entropy
_C.MODEL.SINGLE_PATHWAY_ARCH = ["c2d", "i3d", "slow", "x3d", "vov3d"]  # official key
_C.MODEL.MULTI_PATHWAY_ARCH = ["slowfast"]  # official key
_C.MODEL.DROPOUT_RATE = 0.5  # dropout before the classifier
_C.MODEL.DROPCONNECT_RATE = 0.0  # stochastic depth (official key; not implemented)
_C.MODEL.FC_INIT_STD = 0.01  # std of the classifier weight init
_C.MODEL.HEAD_ACT = "softmax"  # eval-mode activation of the head: softmax | sigmoid
# Memory layout of weights and clips: "auto" (channels_last_3d, the measured fastest on CPU and
# CUDA), "channels_last_3d" or "contiguous" (plain NCTHW).
_C.MODEL.MEMORY_FORMAT = "auto"
_C.MODEL.COMPILE = False  # wrap the model in torch.compile (compile time is paid every run)
_C.MODEL.FOLD_BN = True  # test/export run a copy with BatchNorm folded into the preceding conv (measured faster)
_C.MODEL.DEPTHWISE_IMPL = "auto"  # depthwise 1xkxk / kx1x1 convs as: auto (conv2d on CPU, conv3d on CUDA) | conv2d | conv3d
_C.MODEL.CUDNN_BENCHMARK = True  # torch.backends.cudnn.benchmark on CUDA (autotuned conv algorithms)
_C.MODEL.INFERENCE_AMP = "auto"  # autocast in test/val: auto (float16 on CUDA, off on CPU) | off | bfloat16 | float16
# D(2+1)D bottlenecks (VoV3D units, X3D with X3D.UNIT d2plus1d) of the BN-folded test copy run as one
# fused C kernel on CPU (vov3d/models/fused_units.py): auto (on CPU when a C compiler is there, else
# stock ops with a warning) | on (an error without a compiler) | off. Needs MODEL.FOLD_BN; not with COMPILE.
_C.MODEL.CPU_FUSED_UNITS = "auto"

# ---------------------------------------------------------------------------- #
# SlowFast (official keys; not implemented)
# ---------------------------------------------------------------------------- #
_C.SLOWFAST = CfgNode()
_C.SLOWFAST.BETA_INV = 8
_C.SLOWFAST.ALPHA = 8
_C.SLOWFAST.FUSION_CONV_CHANNEL_RATIO = 2
_C.SLOWFAST.FUSION_KERNEL_SZ = 5

# ---------------------------------------------------------------------------- #
# Data
# ---------------------------------------------------------------------------- #
_C.DATA = CfgNode()
_C.DATA.PATH_TO_DATA_DIR = ""  # folder with the annotation files
_C.DATA.PATH_LABEL_SEPARATOR = " "  # separator of PySlowFast "path label" lists
_C.DATA.PATH_PREFIX = ""  # folder with the videos / frame folders (empty: PATH_TO_DATA_DIR)
_C.DATA.NUM_FRAMES = 8  # frames per clip
_C.DATA.SAMPLING_RATE = 8  # frame stride of dense (Kinetics) sampling
_C.DATA.MEAN = [0.45, 0.45, 0.45]  # per-channel mean, in the channel order fed to the model
_C.DATA.INPUT_CHANNEL_NUM = [3, 3]  # channels per pathway (only the first pathway is used)
_C.DATA.STD = [0.225, 0.225, 0.225]  # per-channel std
_C.DATA.TRAIN_JITTER_SCALES = [256, 320]  # short-side range of train-time scale jitter
_C.DATA.TRAIN_CROP_SIZE = 224  # train crop
_C.DATA.TEST_CROP_SIZE = 256  # test short side and crop
_C.DATA.TARGET_FPS = 30  # frame rate that SAMPLING_RATE refers to
_C.DATA.DECODING_BACKEND = "pyav"  # pyav | torchcodec
_C.DATA.INV_UNIFORM_SAMPLE = False  # sample the jitter scale uniformly in 1/scale
_C.DATA.RANDOM_FLIP = True  # horizontal flip at train time
_C.DATA.MULTI_LABEL = False  # multi-label targets (official key; not implemented)
_C.DATA.ENSEMBLE_METHOD = "sum"  # how views are combined per video: sum | max (of softmax scores)
_C.DATA.REVERSE_INPUT_CHANNEL = False  # feed BGR instead of RGB

# ---------------------------------------------------------------------------- #
# Solver
# ---------------------------------------------------------------------------- #
_C.SOLVER = CfgNode()
_C.SOLVER.BASE_LR = 0.1  # learning rate at TRAIN.BATCH_SIZE (after shard scaling)
_C.SOLVER.LR_POLICY = "cosine"  # cosine | steps_with_relative_lrs | constant
_C.SOLVER.COSINE_END_LR = 0.0  # final cosine learning rate
_C.SOLVER.GAMMA = 0.1  # official key (exp / step policies)
_C.SOLVER.STEP_SIZE = 1  # official key (step policy)
_C.SOLVER.STEPS = []  # epoch boundaries of steps_with_relative_lrs
_C.SOLVER.LRS = []  # relative learning rates of steps_with_relative_lrs
_C.SOLVER.MAX_EPOCH = 300  # training epochs
_C.SOLVER.MOMENTUM = 0.9  # SGD momentum
_C.SOLVER.DAMPENING = 0.0  # SGD dampening
_C.SOLVER.NESTEROV = True  # Nesterov momentum
_C.SOLVER.WEIGHT_DECAY = 1e-4  # weight decay of non-BN parameters
_C.SOLVER.WARMUP_FACTOR = 0.1  # official key (unused by linear warm-up from WARMUP_START_LR)
_C.SOLVER.WARMUP_EPOCHS = 0.0  # linear warm-up length in epochs
_C.SOLVER.WARMUP_START_LR = 0.01  # learning rate at iteration 0 of the warm-up
_C.SOLVER.OPTIMIZING_METHOD = "sgd"  # sgd | adam | adamw
_C.SOLVER.BASE_LR_SCALE_NUM_SHARDS = False  # multiply BASE_LR by NUM_SHARDS (machines)

# ---------------------------------------------------------------------------- #
# Misc
# ---------------------------------------------------------------------------- #
_C.NUM_GPUS = 1  # GPUs per machine (0: CPU)
_C.NUM_SHARDS = 1  # machines
_C.SHARD_ID = 0  # index of this machine
_C.OUTPUT_DIR = "./tmp"  # where checkpoints, logs and results go
_C.RNG_SEED = 1  # seed of python, numpy and torch
_C.LOG_PERIOD = 10  # iterations between log lines; int >= 1
_C.LOG_MODEL_INFO = True  # log params and GFLOPs at start-up
_C.DIST_BACKEND = "nccl"  # distributed backend on GPUs (gloo is always used on CPU)
_C.DIST_STARTUP_TIMEOUT_MINUTES = 30.0  # how long start-up collectives (rendezvous, setup) wait for every process; > 0
_C.DIST_TIMEOUT_MINUTES = 10.0  # how long a collective waits for a silent process once training runs, then the job stops; > 0

# ---------------------------------------------------------------------------- #
# Benchmark (data loader throughput)
# ---------------------------------------------------------------------------- #
_C.BENCHMARK = CfgNode()
_C.BENCHMARK.NUM_EPOCHS = 5  # epochs of the data benchmark
_C.BENCHMARK.LOG_PERIOD = 100  # iterations between benchmark log lines
_C.BENCHMARK.SHUFFLE = True  # shuffle in the data benchmark

# ---------------------------------------------------------------------------- #
# Data loader
# ---------------------------------------------------------------------------- #
_C.DATA_LOADER = CfgNode()
_C.DATA_LOADER.NUM_WORKERS = 8  # loader worker processes per process
_C.DATA_LOADER.PIN_MEMORY = True  # pin host memory (only when CUDA is used)
_C.DATA_LOADER.ENABLE_MULTI_THREAD_DECODE = False  # official key: threaded decode of test views

# ---------------------------------------------------------------------------- #
# Detection / AVA (official keys; not implemented)
# ---------------------------------------------------------------------------- #
_C.DETECTION = CfgNode()
_C.DETECTION.ENABLE = False
_C.DETECTION.ALIGNED = True
_C.DETECTION.SPATIAL_SCALE_FACTOR = 16
_C.DETECTION.ROI_XFORM_RESOLUTION = 7

_C.AVA = CfgNode()
_C.AVA.FRAME_DIR = "/mnt/fair-flash3-east/ava_trainval_frames.img/"
_C.AVA.FRAME_LIST_DIR = "/mnt/vol/gfsai-flash3-east/ai-group/users/haoqifan/ava/frame_list/"
_C.AVA.ANNOTATION_DIR = "/mnt/vol/gfsai-flash3-east/ai-group/users/haoqifan/ava/frame_list/"
_C.AVA.TRAIN_LISTS = ["train.csv"]
_C.AVA.TEST_LISTS = ["val.csv"]
_C.AVA.TRAIN_GT_BOX_LISTS = ["ava_train_v2.2.csv"]
_C.AVA.TRAIN_PREDICT_BOX_LISTS = []
_C.AVA.TEST_PREDICT_BOX_LISTS = ["ava_val_predicted_boxes.csv"]
_C.AVA.DETECTION_SCORE_THRESH = 0.9
_C.AVA.BGR = False
_C.AVA.TRAIN_USE_COLOR_AUGMENTATION = False
_C.AVA.TRAIN_PCA_JITTER_ONLY = True
_C.AVA.TRAIN_PCA_EIGVAL = [0.225, 0.224, 0.229]
_C.AVA.TRAIN_PCA_EIGVEC = [
    [-0.5675, 0.7192, 0.4009],
    [-0.5808, -0.0045, -0.814],
    [-0.5836, -0.6948, 0.4203],
]
_C.AVA.TEST_FORCE_FLIP = False
_C.AVA.FULL_TEST_ON_VAL = False
_C.AVA.LABEL_MAP_FILE = "ava_action_list_v2.2_for_activitynet_2019.pbtxt"
_C.AVA.EXCLUSION_FILE = "ava_val_excluded_timestamps_v2.2.csv"
_C.AVA.GROUNDTRUTH_FILE = "ava_val_v2.2.csv"
_C.AVA.IMG_PROC_BACKEND = "cv2"

# ---------------------------------------------------------------------------- #
# Multigrid (official keys; not implemented)
# ---------------------------------------------------------------------------- #
_C.MULTIGRID = CfgNode()
_C.MULTIGRID.EPOCH_FACTOR = 1.5
_C.MULTIGRID.SHORT_CYCLE = False
_C.MULTIGRID.SHORT_CYCLE_FACTORS = [0.5, 0.5 ** 0.5]
_C.MULTIGRID.LONG_CYCLE = False
_C.MULTIGRID.LONG_CYCLE_FACTORS = [(0.25, 0.5 ** 0.5), (0.5, 0.5 ** 0.5), (0.5, 1), (1, 1)]
_C.MULTIGRID.BN_BASE_SIZE = 8
_C.MULTIGRID.EVAL_FREQ = 3
_C.MULTIGRID.LONG_CYCLE_SAMPLING_RATE = 0
_C.MULTIGRID.DEFAULT_B = 0
_C.MULTIGRID.DEFAULT_T = 0
_C.MULTIGRID.DEFAULT_S = 0

# ---------------------------------------------------------------------------- #
# TensorBoard
# ---------------------------------------------------------------------------- #
_C.TENSORBOARD = CfgNode()
_C.TENSORBOARD.ENABLE = False  # write TensorBoard scalars
_C.TENSORBOARD.PREDICTIONS_PATH = ""  # official key (not implemented)
_C.TENSORBOARD.LOG_DIR = ""  # events folder inside OUTPUT_DIR (default: runs-<dataset>)
_C.TENSORBOARD.CLASS_NAMES_PATH = ""  # JSON of class names for tables and plots
_C.TENSORBOARD.CATEGORIES_PATH = ""  # official key (not implemented)
_C.TENSORBOARD.CONFUSION_MATRIX = CfgNode()
_C.TENSORBOARD.CONFUSION_MATRIX.ENABLE = False  # also log the test confusion matrix to TensorBoard
_C.TENSORBOARD.CONFUSION_MATRIX.FIGSIZE = [8, 8]  # figure size of the confusion matrix
_C.TENSORBOARD.CONFUSION_MATRIX.SUBSET_PATH = ""  # official key (not implemented)
_C.TENSORBOARD.HISTOGRAM = CfgNode()
_C.TENSORBOARD.HISTOGRAM.ENABLE = False
_C.TENSORBOARD.HISTOGRAM.SUBSET_PATH = ""
_C.TENSORBOARD.HISTOGRAM.TOPK = 10
_C.TENSORBOARD.HISTOGRAM.FIGSIZE = [8, 8]
_C.TENSORBOARD.MODEL_VIS = CfgNode()
_C.TENSORBOARD.MODEL_VIS.ENABLE = False
_C.TENSORBOARD.MODEL_VIS.MODEL_WEIGHTS = False
_C.TENSORBOARD.MODEL_VIS.ACTIVATIONS = False
_C.TENSORBOARD.MODEL_VIS.INPUT_VIDEO = False
_C.TENSORBOARD.MODEL_VIS.LAYER_LIST = []
_C.TENSORBOARD.MODEL_VIS.TOPK_PREDS = 1
_C.TENSORBOARD.MODEL_VIS.COLORMAP = "Pastel2"
_C.TENSORBOARD.MODEL_VIS.GRAD_CAM = CfgNode()
_C.TENSORBOARD.MODEL_VIS.GRAD_CAM.ENABLE = True
_C.TENSORBOARD.MODEL_VIS.GRAD_CAM.LAYER_LIST = []
_C.TENSORBOARD.MODEL_VIS.GRAD_CAM.USE_TRUE_LABEL = False
_C.TENSORBOARD.MODEL_VIS.GRAD_CAM.COLORMAP = "viridis"
_C.TENSORBOARD.WRONG_PRED_VIS = CfgNode()
_C.TENSORBOARD.WRONG_PRED_VIS.ENABLE = False
_C.TENSORBOARD.WRONG_PRED_VIS.SUBSET_PATH = ""
_C.TENSORBOARD.WRONG_PRED_VIS.TAG = "Incorrectly classified videos."

# ---------------------------------------------------------------------------- #
# Demo (official keys: the official demo is AVA/webcam based; vov3d's tools/demo_net.py reads
# DEMO.INPUT_VIDEO and DEMO.LABEL_FILE_PATH only)
# ---------------------------------------------------------------------------- #
_C.DEMO = CfgNode()
_C.DEMO.ENABLE = False
_C.DEMO.LABEL_FILE_PATH = ""  # JSON {class name: index} used to name predictions
_C.DEMO.WEBCAM = -1
_C.DEMO.INPUT_VIDEO = ""  # video file for tools/demo_net.py
_C.DEMO.DISPLAY_WIDTH = 0
_C.DEMO.DISPLAY_HEIGHT = 0
_C.DEMO.DETECTRON2_CFG = "COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml"
_C.DEMO.DETECTRON2_WEIGHTS = (
    "detectron2://COCO-Detection/faster_rcnn_R_50_FPN_3x/137849458/model_final_280758.pkl"
)
_C.DEMO.DETECTRON2_THRESH = 0.9
_C.DEMO.BUFFER_SIZE = 0
_C.DEMO.OUTPUT_FILE = ""
_C.DEMO.OUTPUT_FPS = -1
_C.DEMO.INPUT_FORMAT = "BGR"
_C.DEMO.CLIP_VIS_SIZE = 10
_C.DEMO.NUM_VIS_INSTANCES = 2
_C.DEMO.PREDS_BOXES = ""
_C.DEMO.THREAD_ENABLE = False
_C.DEMO.NUM_CLIPS_SKIP = 0
_C.DEMO.GT_BOXES = ""
_C.DEMO.STARTING_SECOND = 900
_C.DEMO.FPS = 30
_C.DEMO.VIS_MODE = "thres"
_C.DEMO.COMMON_CLASS_THRES = 0.7
_C.DEMO.UNCOMMON_CLASS_THRES = 0.3
_C.DEMO.COMMON_CLASS_NAMES = [
    "watch (a person)",
    "talk to (e.g., self, a person, a group)",
    "listen to (a person)",
    "touch (an object)",
    "carry/hold (an object)",
    "walk",
    "sit",
    "lie/sleep",
    "bend/bow (at the waist)",
]
_C.DEMO.SLOWMO = 1

# ---------------------------------------------------------------------------- #
# Demo dataset (TRAIN.DATASET demo): generated once into ROOT, read as SSv2
# ---------------------------------------------------------------------------- #
_C.DEMO_DATA = CfgNode()
_C.DEMO_DATA.ROOT = "~/.cache/vov3d/demo-ssv2"  # where the generated videos and JSON files go
_C.DEMO_DATA.TRAIN_PER_CLASS = 48  # training videos per class
_C.DEMO_DATA.VAL_PER_CLASS = 20  # validation (= test) videos per class
_C.DEMO_DATA.SEED = 0  # generator seed
_C.DEMO_DATA.HEIGHT = 64  # frame height in pixels (widths vary from 64 to 80)

# ---------------------------------------------------------------------------- #
# vov3d extensions (keys the official tree does not have)
# ---------------------------------------------------------------------------- #
# Data pipeline extensions are added here by vov3d.datasets (see DATA.* comments there).
_C.DATA.SS_LABEL_ORDER = "file"  # ssv1 class index: file (labels-CSV line order: VoV3D, MMAction2) | sorted (TSM; = SSv2 indices)
_C.DATA.SS_TEST_VIEW_OFFSET = "uniform"  # SS test view k of K: uniform ((k+0.5)/K of each segment) | middle (PySlowFast/VoV3D)
_C.DATA.SS_SOURCE = "auto"  # ssv2 media: auto | video (<id>.webm) | frames (PySlowFast frame lists {train,val}.csv)
_C.DATA.FRAME_TEMPLATE = "{:05d}.jpg"  # name of frame i (1-based) in an SSv1 frame folder
_C.DATA.TRAIN_ANNOTATION = ""  # train annotation file (absolute or in PATH_TO_DATA_DIR); empty: the released train file
_C.DATA.VAL_ANNOTATION = ""  # val annotation file; empty: the released validation file
_C.DATA.TEST_ANNOTATION = ""  # test annotation file; empty: the released validation file (test labels are not public)
_C.DATA.MAX_BAD_SAMPLE_RETRIES = 10  # train/val: substitutes tried for a bad video before stopping with an error
_C.DATA.MIN_VIDEO_FRAMES = -1  # a video with fewer decodable frames (in a clip's span) is bad data (-1: NUM_FRAMES)
_C.DATA.DECODE_THREADS = 0  # decoder threads per video (0: 1 in loader workers, FFmpeg's choice in-process)
_C.DATA.TEMPORAL_SAMPLING = "auto"  # auto (the dataset's own: segment for SS, dense for Kinetics) | segment | dense
# Engine extensions are added here by vov3d.engine.
_C.TRAIN.MIXED_PRECISION = False  # autocast forward/loss (CUDA; bf16 also works on CPU)
_C.TRAIN.MIXED_PRECISION_DTYPE = "bfloat16"  # bfloat16 | float16 (float16 adds a GradScaler)
_C.TRAIN.GRAD_ACCUM_STEPS = 1  # loader batches per optimizer step (effective batch = BATCH_SIZE x this)
_C.TRAIN.BEST_CHECKPOINT = True  # keep checkpoints/checkpoint_best.pyth of the best validation top-1
_C.TRAIN.DATA_TIME_WARN_FRACTION = 0.5  # warn when waiting for data exceeds this fraction of step time
_C.TRAIN.EMA = CfgNode()
_C.TRAIN.EMA.ENABLE = False  # keep an exponential moving average of the weights
_C.TRAIN.EMA.DECAY = 0.9998  # EMA decay per optimizer step
_C.TRAIN.EMA.EVAL = True  # validate / test the EMA weights (when ENABLE)
_C.SOLVER.LABEL_SMOOTHING = 0.0  # label smoothing of the cross-entropy loss
_C.SOLVER.COSINE_AFTER_WARMUP = False  # newer PySlowFast: the cosine starts at its peak after warm-up
_C.TEST.CLIPS_PER_FORWARD = 0  # max clips per test forward (0: the per-process TEST.BATCH_SIZE)
_C.TEST.SAVE_SCORES = True  # save per-view softmax scores (TEST.SAVE_RESULTS_PATH or test_scores.pt)


# ---------------------------------------------------------------------------- #
# Zoo models (S3D, P3D, SmallBigNet, R(2+1)D, CSN)
# ---------------------------------------------------------------------------- #
_C.S3D = CfgNode()
_C.S3D.GATING = False  # S3D-G: self-gating after Conv2d_2c and each Inception branch
_C.S3D.GATING_STARTAT = "Conv2d_2c_3x3"  # first gated endpoint (TF-slim gating_startat)
_C.S3D.TEMPORAL_CONV_STARTAT = "Conv2d_2c_3x3"  # endpoints before it have no temporal conv (top-heavy)
_C.S3D.TEMPORAL_CONV_ENDAT = "Mixed_5c"  # endpoints after it have no temporal conv (bottom-heavy)
_C.S3D.SEPARABLE = True  # separable 1xkxk + kx1x1 convs (S3D); False: full kxkxk (I3D)
_C.S3D.FIRST_CONV = "separable"  # Conv2d_1a: separable (torchvision 1x7x7 + 7x1x1) | full (TF-slim kx7x7)
_C.S3D.FIRST_TEMPORAL_KERNEL = 7  # temporal kernel of Conv2d_1a (TF-slim default 3, torchvision 7)
_C.S3D.TEMPORAL_BN = True  # BN after the temporal conv (torchvision); False: bias, no BN (TF-slim)
_C.P3D = CfgNode()
_C.P3D.DEPTH = 199  # 63 (ResNet-50 layout), 131 (ResNet-101) or 199 (ResNet-152, official)
_C.P3D.UNIT_CYCLE = "ABC"  # P3D unit types cycled over res2-res4 by global block index
_C.SMALLBIG = CfgNode()
_C.SMALLBIG.EXTRA = False  # add the "extra" max-pooled global gating before each SmallBig unit
_C.SMALLBIG.BIG_VIEW = True  # False: the plain C2D ResNet baseline of the official code
_C.RESNET3D = CfgNode()
_C.RESNET3D.ARCH = "r2plus1d"  # r2plus1d | r3d | mc3 | ir_csn | ip_csn (depth: RESNET.DEPTH)
_C.RESNET3D.SHARED_MID_WIDTH = False  # R(2+1)D: one mid width per block (torchvision), not per conv
_C.RESNET3D.STEM_POOL = False  # max pool 1x3x3 stride (1,2,2) after a 3x7x7 stem (CSN at 224)


# Keys (or whole subtrees) of features vov3d does not implement: accepted, and warned about when set.
UNIMPLEMENTED_KEYS = (
    "AVA",
    "DETECTION",
    "MULTIGRID",
    "NONLOCAL",
    "SLOWFAST",
    "TENSORBOARD.PREDICTIONS_PATH",
    "TENSORBOARD.CATEGORIES_PATH",
    "TENSORBOARD.CONFUSION_MATRIX.SUBSET_PATH",
    "TENSORBOARD.HISTOGRAM",
    "TENSORBOARD.MODEL_VIS",
    "TENSORBOARD.WRONG_PRED_VIS",
    "BN.NUM_SPLITS",
    "MODEL.DROPCONNECT_RATE",
    "DATA.MULTI_LABEL",
    "TRAIN.CHECKPOINT_INFLATE",
    "DEMO.ENABLE",
    "DEMO.WEBCAM",
    "DEMO.DISPLAY_WIDTH",
    "DEMO.DISPLAY_HEIGHT",
    "DEMO.DETECTRON2_CFG",
    "DEMO.DETECTRON2_WEIGHTS",
    "DEMO.DETECTRON2_THRESH",
    "DEMO.BUFFER_SIZE",
    "DEMO.OUTPUT_FILE",
    "DEMO.OUTPUT_FPS",
    "DEMO.INPUT_FORMAT",
    "DEMO.CLIP_VIS_SIZE",
    "DEMO.NUM_VIS_INSTANCES",
    "DEMO.PREDS_BOXES",
    "DEMO.THREAD_ENABLE",
    "DEMO.NUM_CLIPS_SKIP",
    "DEMO.GT_BOXES",
    "DEMO.STARTING_SECOND",
    "DEMO.FPS",
    "DEMO.VIS_MODE",
    "DEMO.COMMON_CLASS_THRES",
    "DEMO.UNCOMMON_CLASS_THRES",
    "DEMO.COMMON_CLASS_NAMES",
    "DEMO.SLOWMO",
)


def _flatten(node, prefix=""):
    out = {}
    for k, v in node.items():
        key = f"{prefix}{k}"
        if isinstance(v, _YacsCfgNode):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _same(a, b):
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def unimplemented_settings(cfg):
    """Returns the (key, value) pairs of unimplemented features that cfg sets to a non-default value."""
    defaults = _flatten(_C)
    found = []
    for key, value in _flatten(cfg).items():
        if any(key == u or key.startswith(u + ".") for u in UNIMPLEMENTED_KEYS):
            if not _same(value, defaults.get(key)):
                found.append((key, value))
    return found


def warn_unimplemented(cfg):
    """Logs one warning per unimplemented key set to a non-default value; returns those keys."""
    found = unimplemented_settings(cfg)
    for key, value in found:
        logger.warning("Config key %s = %r belongs to a feature vov3d does not implement; it is ignored.", key, value)
    return [k for k, _ in found]


def assert_and_infer_cfg(cfg):
    """Checks values that yacs cannot type-check; returns cfg."""
    if cfg.TEST.NUM_SPATIAL_CROPS not in (1, 3):
        raise ValueError(f"TEST.NUM_SPATIAL_CROPS must be 1 or 3, got {cfg.TEST.NUM_SPATIAL_CROPS}")
    if cfg.NUM_GPUS < 0:
        raise ValueError(f"NUM_GPUS must be >= 0, got {cfg.NUM_GPUS}")
    if cfg.MODEL.MEMORY_FORMAT not in ("auto", "channels_last_3d", "contiguous"):
        raise ValueError(
            f"MODEL.MEMORY_FORMAT must be auto, channels_last_3d or contiguous, got {cfg.MODEL.MEMORY_FORMAT!r}"
        )
    if cfg.MODEL.CPU_FUSED_UNITS not in ("auto", "on", "off"):
        raise ValueError(f"MODEL.CPU_FUSED_UNITS must be auto, on or off, got {cfg.MODEL.CPU_FUSED_UNITS!r}")
    return cfg


def get_cfg():
    """Returns a fresh copy of the default config tree."""
    return _C.clone()

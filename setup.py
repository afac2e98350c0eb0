"""vov3d: efficient video classification (VoV3D, X3D and their field) in PyTorch."""

from setuptools import find_packages, setup

setup(
    name="vov3d",
    version="0.1.0",
    description="PySlowFast-style video classification framework: VoV3D, X3D, S3D-G, P3D, SmallBigNet, R(2+1)D, CSN",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.9",
    packages=find_packages(include=["vov3d", "vov3d.*"]),
    package_data={"vov3d.runtime": ["csrc/*.c"]},  # CPU kernels, built on first use (vov3d/runtime/kernels.py)
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "fvcore",
        "iopath",
        "av>=12",
        "simplejson",
        "tensorboard",
        "yacs>=0.1.8",
        "numpy",
        "matplotlib",
        "tqdm",
    ],
    extras_require={
        "test": ["pytest>=7"],
        "slurm": ["submitit"],
        "torchcodec": ["torchcodec"],
    },
)

"""Packaging for the fashion Mask R-CNN library (mrcnn) and its application (fashion)."""
from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
requirements = [line.split("#")[0].strip()
                for line in (here / "requirements.txt").read_text().splitlines()
                if line.split("#")[0].strip()]

setup(
    name="fashion-mrcnn",
    version="0.2.0",
    description="Keras 3 / TensorFlow 2 Mask R-CNN (matterport API) for clothing "
                "segmentation, with EfficientNet-BiFPN backbones and attribute heads",
    long_description=(here / "README.md").read_text() if (here / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["mrcnn", "mrcnn.*", "fashion", "fashion.*"]),
    package_data={"fashion.data": ["labels/*.json"]},
    python_requires=">=3.10",
    install_requires=requirements,
    extras_require={
        "gpu": ["tensorflow[and-cuda]>=2.16,<2.22"],
        # export --format onnx, serve/benchmark ONNX models (int8 included)
        "onnx": ["tf2onnx>=1.16", "onnx>=1.16", "onnxruntime>=1.18"],
        # export --format openvino (converted from ONNX), int8 through NNCF
        "openvino": ["tf2onnx>=1.16", "onnx>=1.16", "openvino>=2024.4", "nncf>=2.13"],
    },
    entry_points={"console_scripts": [
        "fashion-mrcnn = fashion.fashion:main",
        "dgx-ssh = fashion.DGX_ssh_comm:main",
    ]},
    license="MIT",
)

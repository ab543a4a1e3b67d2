from setuptools import setup

setup(
    name="ddpm-fast",
    version="0.1.0",
    description="The S-curve DDPM: a bit-exact reference and fast Triton, torch.compile and CUDA-graph samplers",
    long_description=open("README.md").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # kernels/ is the subpackage ddpm_fast.kernels; no top-level 'kernels' module is installed
    packages=["ddpm_fast", "ddpm_fast.backends", "ddpm_fast.kernels"],
    package_dir={"ddpm_fast": "ddpm_fast", "ddpm_fast.kernels": "kernels"},
    package_data={"ddpm_fast": ["pretrained/*.pt"], "ddpm_fast.backends": ["*.json"]},
    install_requires=["torch>=2.4", "numpy", "scikit-learn", "matplotlib", "tqdm"],
    extras_require={
        "triton": ["triton>=3.2"],
        # diffusers: the samplers' parity tests against its schedulers (skipped without it)
        "test": ["pytest", "pytest-benchmark", "pytest-timeout", "hypothesis", "diffusers"],
    },
    entry_points={"console_scripts": ["ddpm-fast=ddpm_fast.cli:main"]},
)

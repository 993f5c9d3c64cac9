"""Builds the Cython core; everything else is in pyproject.toml."""

from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = [
    Extension(
        "fastmock._core",
        ["src/fastmock/_core.pyx"],
        extra_compile_args=["-O2"],
        libraries=["ssl", "crypto"],  # TLS in the core (core/tls.pyx): OpenSSL's headers are a build dependency
    )
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={"language_level": "3", "embedsignature": True},
        include_path=["src/fastmock"],
    ),
)

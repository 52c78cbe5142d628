"""Packaging: maps ``kernels/`` to ``linkexit_fast.kernels`` and builds the optional C++ ops.

The C++ extension is built here only when torch is importable in the build environment
(``pip install --no-build-isolation``). Otherwise the package installs as pure Python and
``linkexit_fast.backends.cpu`` compiles ``csrc/`` just-in-time on first use.
"""
import glob
import os

from setuptools import setup

ext_modules, cmdclass = [], {}
if os.environ.get("LINKEXIT_NO_BUILD_EXT") != "1":
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError:
        pass
    else:
        sources = sorted(glob.glob("csrc/**/*.cpp", recursive=True))
        if sources:
            # -g0: Python's CFLAGS add -g, and torch's headers make debug information most of
            # the compile: 161 CPU-s with it, 64 without (7 sources, compiled in parallel by ninja
            # when it is installed), a 10.6 MB library against 0.3 MB. The code generated is the same.
            ext_modules = [CppExtension(
                "linkexit_fast._C", sources,
                extra_compile_args=["-O3", "-fopenmp", "-g0"], extra_link_args=["-fopenmp"])]
            class OptionalBuildExtension(BuildExtension):
                """A failed compile must not fail the install: the ops then build just-in-time or
                fall back to the torch backend, with a warning at run time."""

                def run(self):
                    try:
                        super().run()
                    except Exception as e:  # compiler missing or broken
                        print(f"WARNING: linkexit_fast C++ ops not built ({e}); using the fallback")

            cmdclass = {"build_ext": OptionalBuildExtension.with_options(no_python_abi_suffix=True)}

setup(
    packages=["linkexit_fast", "linkexit_fast.backends", "linkexit_fast.engine", "linkexit_fast.kernels"],
    package_dir={"linkexit_fast": "linkexit_fast", "linkexit_fast.kernels": "kernels"},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)

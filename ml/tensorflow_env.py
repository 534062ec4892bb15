"""What convlens sets up before TensorFlow loads (imported first by the package): its kernels, its log level,
and what of its output a user should not have to read."""

import importlib.abc
import importlib.util
import logging
import os
import sys
import tempfile

# TensorFlow uses oneDNN's CPU kernels by default only where the CPU has AVX-512 VNNI/BF16 or AMX; on AVX2-only
# CPUs its fallback kernels train convolutions slower (docs/benchmarks.md has the figures). A value the user set
# wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
# TensorFlow's INFO lines are for its developers; warnings and errors still show. 0 shows everything.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")


class _ExpectedRetracing(logging.Filter):
    """Drops TensorFlow's retracing warning: each fold, trial and study part builds a fresh model in one process,
    whose step functions are traced anew by design, not by the mistake the warning describes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


logging.getLogger("tensorflow").addFilter(_ExpectedRetracing())


# Lines TensorFlow's C++ layer prints while it loads whatever TF_CPP_MIN_LOG_LEVEL says (its logging is not
# initialised yet then): absl's notice about that, and oneDNN's INFO line.
LOAD_NOISE = ("All log messages before absl::InitializeLog() is called", "oneDNN custom operations are on")


class _QuietLoader(importlib.abc.Loader):
    """Runs TensorFlow's import with stderr (file descriptor 2, where C++ writes) in a temporary file, then writes
    back every line but LOAD_NOISE: no setting or library silences those, and a user reads them on every
    command."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def __getattr__(self, name: str):
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no stderr to keep clean (closed, or None)
            self.loader.exec_module(module)
            return
        with tempfile.TemporaryFile() as captured:
            os.dup2(captured.fileno(), 2)
            try:
                self.loader.exec_module(module)
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                captured.seek(0)
                kept = [line for line in captured.read().decode(errors="replace").splitlines(keepends=True)
                        if not any(noise in line for noise in LOAD_NOISE)]
                sys.stderr.write("".join(kept))


class _QuietTensorFlow(importlib.abc.MetaPathFinder):
    """Wraps the loader of `import tensorflow` (libraries also look it up without importing it: Keras does)."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow" or name in sys.modules:
            return None
        sys.meta_path.remove(self)  # the path finders below find its spec
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


if "tensorflow" not in sys.modules and os.environ["TF_CPP_MIN_LOG_LEVEL"] not in ("", "0"):
    sys.meta_path.insert(0, _QuietTensorFlow())

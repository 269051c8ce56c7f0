"""One exception hierarchy for the whole project.

Library code raises these; command lines turn them into one clear line and a non-zero exit.
Every message says what was expected, what was got, and what is allowed.
"""

from __future__ import annotations


class MMWError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(MMWError):
    """config.yaml (or another settings file) has an unknown key, a wrong type or a bad value."""


class ModelSpecError(MMWError):
    """A model spec is inconsistent, or a generated config.pbtxt drifted from its spec."""


class ExportError(MMWError):
    """Building, exporting or validating a model failed."""


class ExportValidationError(ExportError):
    """An exported model disagrees with its source beyond the listed tolerance."""


class EngineError(MMWError):
    """A TensorRT plan cannot be built, or was built for another GPU, TensorRT or ONNX than this machine serves."""


class InputError(MMWError):
    """Bad user input: an unreadable image or video, a wrong shape or dtype."""


class ServerError(MMWError):
    """Starting, stopping or talking to the Triton server failed."""


class DockerError(ServerError):
    """The Docker daemon is unreachable, an image is missing or unpinned, or a container failed."""


class InferenceError(MMWError):
    """The server answered a request with an error."""


class ServerUnavailable(InferenceError):
    """The server could not be reached or is not serving (it may be restarting): worth retrying later."""


class CaptionerError(MMWError):
    """A captioning checkpoint cannot be loaded or exported, or a decoding setting is out of range."""

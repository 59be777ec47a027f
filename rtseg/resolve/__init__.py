"""Resolution: from what a user names to a backend that runs it, for every command and the GUI.

"Which model, which artifact, which backend, which precision" is answered here
once, by one set of rules, above ``runtime`` (backends) and ``export`` (ONNX
export): ``rtseg``, ``rtseg-run``, ``rtseg-bench``, ``rtseg-eval`` and the GUI's
model picker all go through it.

- ``rtseg.resolve.model``: ``ModelChoice`` (a zoo model + weights at a size, an
  ONNX file, or a TensorRT engine) and ``resolve_model(args)`` (command-line
  arguments, or the bundled default).
- ``rtseg.resolve.backend``: ``resolve(choice, backend, precision, ...)`` ->
  ``Resolution``, whose ``factory`` builds the backend (exporting the ONNX first
  when needed) on the thread that will own it.

Nothing heavy is imported at module level.
"""

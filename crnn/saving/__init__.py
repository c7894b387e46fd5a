"""Saving and loading models: one ``.npz`` file holding JSON and numeric arrays, nothing
that runs code when read.

A file written by :func:`save_model` (``model.save(path)``) holds

==========================  ===========================================================
``__crnn__``                the header: ``["crnn", "<format version>", "<kind>"]``,
                            kind ``"model"`` or ``"weights"``
``config.json``             UTF-8 JSON as a ``uint8`` array: the architecture, the names
                            of the weights, the compile configuration, the state of
                            every random generator
``layers/<i>/<name>``       the weights of ``model.layers[i]`` (``layers/0/kernel``;
                            nested layers add their path: ``layers/2/forward/bias``,
                            ``layers/1/layers/0/kernel`` for a model inside a model)
``optimizer/<name>``        the optimizer's :meth:`get_state` arrays (``iterations``,
                            ``m/0``, ...), so that training resumes identically
==========================  ===========================================================

:func:`save_weights` writes the same file without the architecture, the compile
configuration and the optimizer; :func:`load_weights` reads the weights of either kind.

Reading never unpickles (``np.load(..., allow_pickle=False)``) and never imports or
evaluates anything named in the file: a class name is looked up in crnn's own layers or in
the ``custom_objects`` the caller passes. Every way a file can be wrong (empty, not a zip,
truncated, a foreign ``.npz``, malformed JSON, an unknown class, a pickled array) raises
``ValueError`` saying what was expected.

The architecture, as JSON:

* a **Sequential**: its layers' ``{"class_name", "config"}`` in order, and the
  :func:`crnn.Input` it starts with (or, for one built by a first call, an input shape
  that builds it again);
* a **functional** model: its layers, each once (a shared layer too); its nodes in
  topological order, each ``{"layer": <index>, "args", "kwargs"}`` where a tensor is a
  reference, ``{"__tensor__": [node, output]}`` or ``{"__input__": i}``; its inputs
  (shape, dtype, name) and the structure of its inputs and outputs;
* a **subclassed** model (its own ``call``): saved when its class is registered with
  :func:`register_serializable` (Keras's ``register_keras_serializable``) and has
  ``get_config``: its class name and registered name (``"package>Name"``), its config,
  and the shapes of the inputs of its last call (``build_input``), on which zeros build
  its weights again at load time. The class is found by its registered name or in
  ``load_model``'s ``custom_objects``, never imported; an unregistered one raises
  ``ValueError`` at save time (save its weights with :func:`save_weights` instead).

Loading checks before it trusts: the weight shapes the architecture gives are computed
without allocating them and compared with the shapes the file's members declare; only
the members the header lists are read, each after its declared shape and size were
checked (a small file cannot make a load decompress or allocate more than the model it
describes holds).

Values JSON lacks are written as one-key objects: a tuple ``{"__tuple__": [...]}``, a slice
``{"__slice__": [start, stop, step]}``, ``...`` ``{"__ellipsis__": null}``, a dtype
``{"__dtype__": "float32"}``, a small numeric array ``{"__ndarray__": {"dtype", "shape",
"data"}}``, NaN or an infinity ``{"__float__": "nan"}``, a dict with non-string keys
``{"__items__": [[key, value], ...]}`` (a dict that could be read as one of these is
escaped as ``{"__dict__": {...}}``).

The package, bottom to top: :mod:`~crnn.saving.codec` (JSON for what JSON lacks),
:mod:`~crnn.saving.weights` (weights and random generators by name),
:mod:`~crnn.saving.architecture` (layers by class name, Sequential and functional models
as JSON), :mod:`~crnn.saving.compile` (the compile configuration and optimizer state) and
:mod:`~crnn.saving.files` (the archive, and ``save_model``/``load_model``/
``save_weights``/``load_weights``). It imports nothing from :mod:`crnn.models`: a model's
``save`` calls it.
"""
from crnn.registry import custom_object_scope, register_serializable
from crnn.saving.architecture import (from_model_config, get_model_config,
                                      model_from_config, model_from_json, model_to_json)
from crnn.saving.files import load_model, load_weights, save_model, save_weights

register_keras_serializable = register_serializable   # Keras's name

__all__ = ["custom_object_scope", "from_model_config", "get_model_config", "load_model",
           "load_weights", "model_from_config", "model_from_json", "model_to_json",
           "register_keras_serializable", "register_serializable", "save_model",
           "save_weights"]

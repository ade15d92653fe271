"""An example psgrad plugin package: a codec, a scheme and a task of its own.

Installed (``pip install -e examples/plugin``), its entry points make the names ``stochastic_uniform``
(codec), ``decayed_shift`` (scheme) and ``wine_mlp`` (task) work in any psgrad config. Without installing
it, the same objects are reachable by import path once this folder is on ``sys.path``:
``psgrad_example.codec:StochasticUniform``, ``psgrad_example.scheme:DecayedShift``,
``psgrad_example.task:build_wine_mlp``. See docs/extending.md in psgrad.
"""

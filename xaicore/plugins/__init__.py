"""The plugin machinery: how the core finds, loads, checks and calls its plugins.

``hookspecs`` defines the hooks a plugin implements; ``loading`` loads the ``xai`` entry points into
one pluggy manager, each plugin on its own; ``registry`` collects what they register (explainers,
models, datasets, metrics, renderers, engines, commands) under unique names; ``boundary`` wraps plugin
code so that a failure names the plugin that caused it; ``options`` declares and checks plugin
options; ``stages`` runs the renderers of a report stage. (The core's own plugin, entry point
``core``, is ``xaicore.builtin``.) Plugins themselves import none of this: they use ``xaicore.plugin``
and ``xaicore.application``.
"""

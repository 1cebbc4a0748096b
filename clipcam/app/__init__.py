"""The web app: ``service`` is what the app does without the web (tested directly), ``ui`` wires it
to Gradio widgets (the only module that imports gradio)."""

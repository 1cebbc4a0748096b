"""The web app in three layers: ``service`` is what the app does in plain Python (tested without
serving), ``layout`` lays out the gradio components and wires their events to ``handlers``, which
map the service's results onto them. Beside them, by concept: ``inputs`` (every request checked
once), ``choices`` (models, methods and their starting settings), ``settings`` (what the controls
show), ``examples``, ``kept`` and ``sessions`` (kept results), ``pictures`` (drawing and downloads),
``page`` (HTML, CSS, JS), ``server`` (Janitor, deadlines, ZeroGPU) and ``components``. Only
``layout``, ``handlers`` and ``components`` import gradio."""

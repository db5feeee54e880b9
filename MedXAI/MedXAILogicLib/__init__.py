"""Qt-free helpers behind the MedXAI Slicer module.

- :mod:`.bridge` turns MRML nodes into :class:`MedXAILib.volume.Volume` objects and results back into nodes (heat
  maps, relevance overlays, segmentations, tables, subject hierarchy placement).
- :mod:`.counterfactual` turns a counterfactual result into nodes: the counterfactual volume(s), the difference
  map, and the progressive series as a sequence with a browser (a slider over the steps).
- :mod:`.jobs` runs ``python -m MedXAILib`` in a background process, parses its ``--progress json`` lines and can
  cancel the whole process tree.
- :mod:`.workflow` ties both together: inputs are written to a temporary folder, the CLI runs, and its outputs become
  nodes.

Nothing here imports ``qt``, ``ctk`` or any widget, so all of it is tested with the ``slicer-core`` wheel.
"""

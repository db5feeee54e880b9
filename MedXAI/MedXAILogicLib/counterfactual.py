"""Counterfactual results as MRML nodes (Qt-free; tested against the ``slicer-core`` wheel).

- the counterfactual input: one scalar volume node per channel (``<name> t1``, ``<name> flair``, …), on the input's
  grid and following the reference node's parent transform;
- the difference map (counterfactual − input, input units): a float volume with a diverging blue–red colour table,
  symmetric window ±max|Δ|, small changes transparent;
- the progressive series: a ``vtkMRMLSequenceNode`` of the shown channel (one frame per step, the last is the
  counterfactual) with a ``vtkMRMLSequenceBrowserNode`` and a proxy volume, so Slicer's sequence toolbar gives a
  slider over the steps; :func:`show_series_step` moves it from code.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import slicer

from MedXAILib.errors import InputError
from MedXAILib.volume import Volume

from .bridge import (
    _find_by_name,
    _new_user_color_table,
    _shape_kji,
    add_volume_node,
    ijk_to_ras_of,
    set_volume_node,
    update_node_from_volume,
)

DIFFERENCE_COLOR_NODE_NAME = "MedXAI difference"


def difference_color_node(scene: slicer.vtkMRMLScene) -> slicer.vtkMRMLColorTableNode:
    """A 256-entry diverging table: blue (darker) → black → red (brighter), created once per scene."""
    node = _find_by_name(scene, "vtkMRMLColorTableNode", DIFFERENCE_COLOR_NODE_NAME)
    if node is not None:
        return node
    node = _new_user_color_table(scene, DIFFERENCE_COLOR_NODE_NAME, 256)
    for index, t in enumerate(np.linspace(-1.0, 1.0, 256)):
        r, b = max(t, 0.0), max(-t, 0.0)
        node.SetColor(index, f"{index}", 0.15 + 0.85 * r, 0.15 * (1 - abs(t)), 0.15 + 0.85 * b, 1.0)
    node.SetAttribute("Category", "MedXAI")
    return node


def add_difference_node(
    scene: slicer.vtkMRMLScene, difference: Volume, reference: slicer.vtkMRMLVolumeNode, name: str,
    node: slicer.vtkMRMLScalarVolumeNode | None = None,
) -> slicer.vtkMRMLScalarVolumeNode:
    """The signed difference map (first channel of ``difference``) as a float volume with the diverging table
    (a new node, or ``node`` with its voxels replaced)."""
    data = difference.with_array(difference.array[:1].astype(np.float32))
    node = set_volume_node(scene, data, name, reference, node)
    peak = float(np.abs(data.array).max()) or 1.0
    display = node.GetDisplayNode()
    display.SetAndObserveColorNodeID(difference_color_node(scene).GetID())
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(-peak, peak)
    node.SetAttribute("MedXAI.Role", "counterfactual-difference")
    return node


def _browser(scene: slicer.vtkMRMLScene, name: str) -> slicer.vtkMRMLSequenceBrowserNode:
    if not scene.IsNodeClassRegistered("vtkMRMLSequenceBrowserNode"):  # the application registers it; a bare scene not
        scene.RegisterNodeClass(slicer.vtkMRMLSequenceBrowserNode())
    return scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", scene.GenerateUniqueName(name))


def add_series_nodes(
    scene: slicer.vtkMRMLScene, series: Sequence[Volume], reference: slicer.vtkMRMLVolumeNode, name: str,
    channel: int = 0,
) -> dict[str, Any]:
    """The progressive series of one channel as a sequence + browser + proxy volume (frame 0 shown)."""
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", scene.GenerateUniqueName(f"{name} series"))
    sequence.SetIndexName("step")
    sequence.SetIndexUnit("")
    sequence.SetIndexType(sequence.NumericIndex)
    for n, frame in enumerate(series):
        data = slicer.vtkMRMLScalarVolumeNode()
        update_node_from_volume(data, frame, channel=channel if frame.n_channels > 1 else None)
        sequence.SetDataNodeAtValue(data, str(n))
    proxy = add_volume_node(scene, series[0], f"{name} step", reference=reference,
                            channel=channel if series[0].n_channels > 1 else None)
    browser = _browser(scene, f"{name} browser")
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    browser.AddProxyNode(proxy, sequence, False)
    browser.SetSelectedItemNumber(0)
    return {"sequence": sequence, "browser": browser, "proxy": proxy}


def series_of_browser(browser: slicer.vtkMRMLSequenceBrowserNode) -> dict[str, Any] | None:
    """``{"sequence", "browser", "proxy"}`` of a series browser made by :func:`add_series_nodes` (None when it has no
    sequence or proxy any more), e.g. found again through a heat map's ``MedXAI.SeriesBrowser`` reference."""
    sequence = browser.GetMasterSequenceNode()
    proxy = browser.GetProxyNode(sequence) if sequence is not None else None
    if sequence is None or proxy is None:
        return None
    return {"sequence": sequence, "browser": browser, "proxy": proxy}


def show_series_step(series: dict[str, Any], index: int) -> None:
    """Select step ``index`` (clipped to the series) in the browser and show it in the proxy volume."""
    sequence, browser, proxy = series["sequence"], series["browser"], series["proxy"]
    index = int(np.clip(index, 0, sequence.GetNumberOfDataNodes() - 1))
    browser.SetSelectedItemNumber(index)
    frame = sequence.GetNthDataNode(index)
    proxy.SetAndObserveImageData(frame.GetImageData())  # the Sequences logic does this in the application too


def add_counterfactual_nodes(
    scene: slicer.vtkMRMLScene,
    reference: slicer.vtkMRMLVolumeNode,
    counterfactual: Volume,
    difference: Volume,
    series: Sequence[Volume] = (),
    name: str = "MedXAI counterfactual",
    series_channel: int | None = None,
    difference_node: slicer.vtkMRMLScalarVolumeNode | None = None,
) -> dict[str, Any]:
    """Turn a counterfactual result into nodes (see the module docstring).

    Args:
        reference: the input node (grid and parent transform to follow).
        counterfactual: ``(C, K, J, I)`` counterfactual input (input units). difference: its difference map.
        series: the progressive series (Volumes like ``counterfactual``); empty for ``sedc``.
        series_channel: the channel shown in the series (default: the last, FLAIR for BraTS channel order).
        difference_node: write the difference map into this node (replaced); None: a new one.

    Returns:
        ``{"counterfactual": [nodes per channel], "difference": node, "series": {...} or None}``.
    """
    names = counterfactual.channel_names or [f"c{c}" for c in range(counterfactual.n_channels)]
    nodes = [add_volume_node(scene, counterfactual, f"{name} {n}" if counterfactual.n_channels > 1 else name,
                             reference=reference, channel=c if counterfactual.n_channels > 1 else None)
             for c, n in enumerate(names)]
    for node in nodes:
        node.SetAttribute("MedXAI.Role", "counterfactual")
    diff = add_difference_node(scene, difference, reference, f"{name} difference", difference_node)
    shown = counterfactual.n_channels - 1 if series_channel is None else int(series_channel)
    steps = add_series_nodes(scene, series, reference, name, shown) if len(series) else None
    return {"counterfactual": nodes, "difference": diff, "series": steps}


def read_counterfactual_outputs(
    heatmap_path: str | Any, reference: slicer.vtkMRMLVolumeNode,
) -> tuple[Volume, Volume, list[Volume]]:
    """``(counterfactual, difference, series)`` from the files ``explain --counterfactual FILE --series DIR --output
    HEAT`` wrote (listed in the sidecar ``HEAT.json``), each put exactly on ``reference``'s grid.

    The difference map is the heat map itself (counterfactual − input, input units).

    Raises:
        InputError: the sidecar lists no counterfactual, or a file lies on another grid than ``reference``.
    """
    import json
    from pathlib import Path

    from MedXAILib.io import read_image

    grid = Volume(np.zeros((1,) + _shape_kji(reference), np.uint8), ijk_to_ras_of(reference))

    def on_grid(volume: Volume, what: str) -> Volume:
        diff = grid.geometry_difference(volume, atol=1e-3)
        if diff is not None:
            raise InputError(f"the {what} has {diff} than {reference.GetName()}")
        return Volume(volume.array, grid.ijk_to_ras, volume.channel_names)

    sidecar = json.loads(Path(str(heatmap_path) + ".json").read_text())
    names = sidecar.get("counterfactual_channels") or []

    def _stack(paths: Sequence[str], what: str) -> Volume:
        vols = [on_grid(read_image(p, grayscale_2d=False), what) for p in paths]
        if len(vols) == 1:
            return vols[0]
        stacked = Volume.stack(vols)
        return Volume(stacked.array, stacked.ijk_to_ras, names if len(names) == len(vols) else [])

    cf_files = sidecar.get("counterfactual_files")
    if not cf_files:
        raise InputError(f"{heatmap_path}.json lists no counterfactual_files; run explain with --counterfactual")
    series = [_stack(paths, "series step") for paths in sidecar.get("series_files", [])]
    difference = on_grid(read_image(heatmap_path, grayscale_2d=False), "difference map")
    return _stack(cf_files, "counterfactual"), difference, series


def load_counterfactual_outputs(
    scene: slicer.vtkMRMLScene, reference: slicer.vtkMRMLVolumeNode, heatmap_path: str,
    name: str = "MedXAI counterfactual",
) -> dict[str, Any]:
    """Nodes from the files ``explain --counterfactual FILE --series DIR --output HEAT`` wrote
    (:func:`read_counterfactual_outputs`, then :func:`add_counterfactual_nodes`)."""
    cf, difference, series = read_counterfactual_outputs(heatmap_path, reference)
    return add_counterfactual_nodes(scene, reference, cf, difference, series, name)

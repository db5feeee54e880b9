"""The *Inputs* section's logic: which volumes go in, checked against the model, on one grid, grey (mixin)."""

from __future__ import annotations

from typing import Any, Sequence

from ..i18n import tr as _

PHANTOM_SEED = 7
XRAY_SEED = 20261126  # the `demo` command's held-out chest phantom (the demo models were trained on seeds < 10 000)
#: Node classes an input row accepts (exactly these: label maps and other subclasses are left out).
INPUT_NODE_TYPES = ("vtkMRMLScalarVolumeNode", "vtkMRMLVectorVolumeNode")
#: How an input row's node selector offers exactly :data:`INPUT_NODE_TYPES`. The parameter node's connector replaces
#: a bound selector's ``nodeTypes`` with the parameter's class (``vtkMRMLScalarVolumeNode``), so the selector shows
#: that class with its subclasses, less these (vector volumes, RGB included, stay).
INPUT_SELECTOR_NODE_TYPES = ("vtkMRMLScalarVolumeNode",)
INPUT_HIDDEN_NODE_TYPES = ("vtkMRMLLabelMapVolumeNode", "vtkMRMLDiffusionWeightedVolumeNode",
                           "vtkMRMLDiffusionTensorVolumeNode", "vtkMRMLStreamingVolumeNode")


class InputsLogic:
    """Mixin of the module logic (``self.scene`` is the MRML scene)."""

    def checkInputs(self, nodes: Sequence[Any], entry: Any = None) -> list:
        """The input volumes for ``entry``'s channels: all selected, one per channel (in the model's order).

        Raises:
            ValueError: a channel has no volume (the message names the model's channels).
        """
        nodes = list(nodes)
        if not nodes or nodes[0] is None:
            raise ValueError(_("Select the input volume(s) first"))
        if entry is not None:
            missing = [c for c, n in zip(entry.channels, nodes) if n is None]
            if missing or len(nodes) < len(entry.channels):
                raise ValueError(_("{model} takes {count} volume(s): {names}").format(
                    model=entry.display_name, count=len(entry.channels), names=", ".join(entry.channels)))
            return nodes[:len(entry.channels)]
        return [n for n in nodes if n is not None]

    def guessInputVolumes(self, channels: Sequence[str]) -> list:
        """One volume per channel name, picked by node name (None where nothing fits); RGB volumes count."""
        from MedXAILogicLib.workflow import match_channels

        nodes = []
        for class_name in INPUT_NODE_TYPES:
            collection = self.scene.GetNodesByClass(class_name)
            for i in range(collection.GetNumberOfItems()):
                node = collection.GetItemAsObject(i)
                if node.GetClassName() == class_name and node not in nodes \
                        and node.GetAttribute("MedXAI.Role") in (None, "", "resampled input"):
                    nodes.append(node)
        if len(channels) == 1:
            return [nodes[0] if nodes else None]
        picked = match_channels(list(channels), [n.GetName() for n in nodes])
        return [nodes[i] if i is not None else None for i in picked]

    @staticmethod
    def colourNotes(nodes: Sequence[Any]) -> list[str]:
        """One line per RGB input: it is converted to grey before the model sees it."""
        from MedXAILogicLib import inputs

        return [inputs.colour_note(n) for n in nodes if n is not None and inputs.is_colour(n)]

    def gridMismatches(self, nodes: Sequence[Any]) -> list:
        """``(node, how it differs)`` for inputs whose world grid differs from the first one's."""
        from MedXAILogicLib import grids

        return grids.grid_mismatches(nodes)

    def resampleInputs(self, nodes: Sequence[Any]) -> list:
        """The first node, and every other one resampled onto its grid where it differs (new nodes)."""
        from MedXAILogicLib import grids

        differing = {id(n) for n, _diff in grids.grid_mismatches(nodes)}
        return [nodes[0]] + [grids.resample_to_reference(self.scene, n, nodes[0]) if id(n) in differing else n
                             for n in nodes[1:]]

    def loadPhantomCase(self, seed: int = PHANTOM_SEED) -> dict:
        """Make the sample brain phantom (four sequences and its truth) as nodes; generated here, no download."""
        from MedXAILogicLib import samples

        case = samples.brain_phantom_case(self.scene, seed)
        self._showBackground(case["volumes"][1])
        return case

    def loadChestXrayCase(self, seed: int = XRAY_SEED) -> dict:
        """Make the sample chest X-ray (a 2D radiograph with a nodule and cardiomegaly) and its truth regions.

        Generated here (no download); ``demo-chest-xray`` classifies it. The truth is a segmentation with one
        segment per present finding.
        """
        from MedXAILogicLib import samples

        case = samples.chest_xray_case(self.scene, seed)
        self._showBackground(case["volumes"][0])
        return case

    def _showBackground(self, node: Any) -> None:
        import slicer

        if hasattr(slicer.util, "setSliceViewerLayers") and getattr(slicer, "app", None) is not None:
            slicer.util.setSliceViewerLayers(background=node, fit=True)

"""The MedXAI samples as Sample Data sources (read at Slicer's startup: standard library only)."""

from __future__ import annotations

from typing import Any, Callable

#: The Sample Data category of the MedXAI samples.
SAMPLE_CATEGORY = "MedXAI"
#: Every argument of ``SampleDataSource`` whose length ``SampleDataSource.__init__`` compares (Slicer 5.8–5.13): given
#: as empty lists, since the samples are made here by a custom "downloader" and nothing is downloaded.
NO_FILES = ("uris", "fileNames", "nodeNames", "loadFiles", "loadFileTypes", "checksums")


def sample_data_sources(thumbnail: str, loaders: dict[str, Callable[..., list]]) -> list[dict[str, Any]]:
    """The keyword arguments of ``SampleDataLogic.registerCustomSampleDataSource`` for each MedXAI sample.

    ``loaders`` maps the sample name (``MedXAIBrainPhantom``, ``MedXAIChestXray``) to the function Sample Data calls
    with the source when its button is pressed (``customDownloader``); it makes the nodes and returns them. The file
    lists are empty (:data:`NO_FILES`): ``SampleDataSource`` requires them to be sequences of one length.
    """
    return [{"category": SAMPLE_CATEGORY, "sampleName": name, "thumbnailFileName": thumbnail,
             "customDownloader": loader, **{key: [] for key in NO_FILES}} for name, loader in loaders.items()]


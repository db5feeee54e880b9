"""Reader studies: do explanations help clinicians decide better?

A reader study is a folder made by ``study create`` (:mod:`.create`, :mod:`.protocol`): the protocol, every arm's
material computed once with the real model, and the readers' answers, one append-only file per reader
(:mod:`.records`, :mod:`.session`; the Slicer module *MedXAIReaderStudy* writes through the same code, and
:mod:`.simulate` drives it headless). ``study analyse`` runs the multi-reader multi-case analysis:

- :mod:`.ratings` — the long-format ratings table (``reader, modality, case, truth, rating``) and its checks;
- :mod:`.auc` — empirical AUC and placement values; :mod:`.covariance` — jackknife and DeLong covariances and the
  Obuchowski–Rockette averages; :mod:`.orh` — the OR analysis with Hillis' degrees of freedom (random or fixed
  readers and cases); :mod:`.analysis` — all of it for one table (``mrmc.json``);
- :mod:`.summaries` — reliance on the AI, trust and localisation from the reading records;
- :mod:`.sample_size` — readers and cases for a full study (Hillis–Obuchowski); :mod:`.report` — HTML and figures.
"""

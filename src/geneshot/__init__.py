"""geneshot: predict spatial gene expression from H&E, including genes never seen in training.

Public namespaces (small, squidpy-style):

- :mod:`geneshot.read`     readers that turn a dataset folder into one AnnData per section
- :mod:`geneshot.data`     gene universe, selection, target normalisation, splits
- :mod:`geneshot.image`    windowed slide reading, spot patches, stain normalisation
- :mod:`geneshot.nuclei`   nuclei segmentation and nuclei-distribution maps
- :mod:`geneshot.genes`    gene knowledge base and description builders
- :mod:`geneshot.encoders` image and text encoder registries
- :mod:`geneshot.models`   model registry (ALIGN-ST, SGN, baselines, controls)
"""

__version__ = "0.1.0"

"""AnnData keys and other names used across the package.

Every key that geneshot reads from or writes to an AnnData is named here, so that a
newcomer can find all of them in one place and no string literal drifts.
"""

from __future__ import annotations


class Key:
    """Keys of a section AnnData (scverse conventions)."""

    # obsm
    SPATIAL = "spatial"  # (n_spots, 2) full-resolution pixels, x = column, y = row

    # obs
    SECTION = "section"
    PATIENT = "patient"
    ARRAY_ROW = "array_row"  # grid row index of the spot (legacy ST: y, Visium: row)
    ARRAY_COL = "array_col"  # grid column index of the spot (legacy ST: x, Visium: col)
    IN_TISSUE = "in_tissue"
    TOTAL_COUNTS = "total_counts"  # library size over ALL measured genes, fixed at read time

    # uns["spatial"][library_id] = {"images": ..., "scalefactors": ..., "metadata": ...}
    UNS_SPATIAL = "spatial"
    IMAGES = "images"
    SCALEFACTORS = "scalefactors"
    METADATA = "metadata"
    SPOT_DIAMETER = "spot_diameter_fullres"  # in full-resolution pixels
    HIRES_SCALEF = "tissue_hires_scalef"
    LOWRES_SCALEF = "tissue_lowres_scalef"
    IMAGE_PATH = "image_path"  # metadata: full-resolution image on disk, or None
    MPP = "microns_per_pixel"  # metadata: µm per full-resolution pixel
    DATASET = "dataset"  # metadata: name of the dataset the section came from

    # uns
    GENESHOT = "geneshot"  # provenance written by geneshot

    # var
    SEEN = "seen_in_training"
    DESCRIPTION = "description"
    DEPARTURE = "departure"  # 1 - PCC of the gene's map with the common per-spot pattern

    # layers
    COUNTS = "counts"
    UNCERTAINTY = "uncertainty"


# Physical defaults (paper-notes §2.7: HER2+/cSCC pipelines use 224 px windows).
DEFAULT_PATCH_UM = 112.0
DEFAULT_PATCH_PX = 224

ENV_DATA = "GENESHOT_DATA"
ENV_CACHE = "GENESHOT_CACHE"

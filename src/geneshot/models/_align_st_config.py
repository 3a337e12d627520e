"""ALIGN-ST's default config, every value with where it comes from.

``[P]`` the paper, ``[I]`` our inference, ``[C]`` released code (docs/paper-notes.md);
geneshot's additions and the values chosen by nested CV say so and point to BENCHMARKS.md.
"""

from __future__ import annotations

#: Default config; speed-tuned so one forward+backward on a 190-spot slide with 64 genes x 96
#: tokens takes roughly 0.2 s on 2 CPU cores (see the report in tests/models).
ALIGN_ST_DEFAULTS: dict = {
    # input dimensions (set from the prepared data)
    "d_img": 1280,
    "nuclei_channels": 4,
    "nuclei_size": 56,
    "d_text": 384,
    # widths: D_h = D_t = D_e = d_model [I, §5.5]
    "d_model": 128,
    "n_heads": 4,
    "mlp_ratio": 2.0,
    "dropout": 0.1,
    # NDAIFE: five 3x3 conv-BN-ReLU [P, §2.2]; channels/strides [I, §5.2], 56 -> 7x7 tokens
    "conv_channels": [8, 16, 32, 32, 64],
    "conv_strides": [2, 2, 2, 1, 1],
    # PGGP [P, §2.3]; number of prompts and alpha [I, §5.5]
    "n_prompts": 4,
    "n_text_layers": 4,
    "alpha": 0.5,
    # mean-pool each 4 description tokens into one: the text stream is ~60% of a step and its
    # cost falls ~3x (ours, for speed; 1 = exact)
    "token_pool": 4,
    "max_tokens": None,
    # ASIG [P, §2.4]; k [I, §5.6]
    "top_k": 8,
    # spot graph [I, §2.5 / §3.2]
    "n_graph_layers": 2,
    "near_max": 8,
    "knn_k": 5,
    # head [I, §2.5]
    "normalize_gene": True,
    # geneshot addition [I]: add a projection of the pooled sentence embedding to the CLS
    # output, so the gene side starts from the text encoder's own semantic summary
    "use_pooled": False,
    # geneshot addition [I]: a learned gene vector shared by all genes, added before the head.
    # Genes whose text says little fall back to the common spatial pattern (what the `depth`
    # control predicts) instead of a random direction.
    "shared_gene_vector": False,
    # geneshot addition [I]: a learned vector per seen training gene ("gene memory", 0 = off;
    # the trainer sets the number of slots). Unseen genes have none and borrow their seen
    # neighbours' memory through ASIG, as the text-knn baseline borrows their ridge fits. In
    # training an output gene's own slot is dropped with `memory_drop`, so that the model also
    # learns to predict from text and neighbours alone, as it must for unseen genes.
    "gene_memory": 0,
    "memory_drop": 0.5,
    # geneshot addition [I]: the common component made explicit. Prediction =
    # a_g * m(spot) + b_g + s_g * (spot . w_g), with m a per-spot scalar head, a_g (around 1),
    # b_g and the gate s_g >= 0 small heads on the gene vector: a gene whose text says little
    # gets s_g -> 0 and falls back to the common pattern on the target scale.
    # Off by default: on the inner split (C2–C4, scripts/trainer_curves.py) it scored within
    # noise of the plain head, and with it predictions no longer decompose as spots @ w.T + b.
    "common_component": False,
    # geneshot addition [I]: "kernel" (models/_kernel_head.py: every gene read off the seen
    # genes' ridge fits by kernel ridge in gene space, the kernel from the gene encoder and
    # ALIGN-ST's gene embeddings; the context genes must be seen genes, and the trainer passes
    # their targets) or "dot" (the paper's head: spot . gene vector + bias; model
    # `align-st-paper`). The kernel head won 5 of 5 outer folds of the nested CV
    # (scripts/choose_features.py --what head, BENCHMARKS.md).
    "head": "kernel",
    # principal components of the image features in the spot vector: 128 won 3 of 5 outer
    # folds of the nested CV against 256 and 512 (session 16; loss-averse 0.1925 / 0.1929 /
    # 0.1886, PCC@M 0.2038 / 0.2062 / 0.2016; scripts/choose_features.py --what anchor
    # --criterion loss-averse --select-on align-st; BENCHMARKS.md)
    "kernel_anchor": 128,
    "kernel_gamma": 10.0,  # initial sharpness of the text kernel (learned)
    "kernel_lambda": 0.1,  # initial ridge penalty in gene space (learned)
    "ridge_alpha": 1e-3,  # initial ridge penalty of the support fits (learned)
    # initial weight of the genes' locus kernel (same chromosome arm / region / band; learned;
    # 0 = off). geneshot's [I]: gene knowledge the paper does not use (BENCHMARKS.md, session 6)
    "kernel_locus": 0.5,
    # start gamma, lambda and the locus weight at the gene CV's choice on the training genes
    # (KernelHead.choose_start, the rule gene-kernel chooses by); False: at the values above
    "kernel_cv_start": True,
    # the seen genes' maps that start's CV reads: "in-sample" (fitted on all training spots)
    # or "out-of-section" (each training section predicted from the others), as gene-kernel
    "cv_fits": "in-sample",
    # the seen genes' fits kept for prediction: "learned" (the head's learned penalty, as in
    # training) or "gcv" (a penalty per gene by GCV, as gene-kernel's fits). "gcv" with the
    # departure factor (8, 1.6) below won 3 of 5 outer folds of the nested CV over the
    # learned fits crossed with the whole departure grid (session 15, scripts/choose_features.py
    # --what support-departure --criterion loss-averse --select-on align-st; the pick rule,
    # most outer folds, adopted in session 16; BENCHMARKS.md)
    "support_fit": "gcv",
    # the common pattern m at prediction: "mean" (the mean of the stored fits) or "gcv" (its
    # own ridge of the spots' mean target, penalty by GCV, as the depth control); "gcv" won
    # the nested CV 5 of 5 (scripts/choose_features.py --what common-fit; BENCHMARKS.md)
    "common_fit": "gcv",
    # the departure from the common pattern at prediction, times this (models/_gene_cv.py):
    # the gene CV fits the kernel on seen genes, whose maps are mostly the common pattern;
    # the most expressed genes depart from it more. With departure_shrink > 0 the factor is per
    # gene, departure_scale * r / (r + departure_shrink), r the spread of the gene's departure
    # over the training spots against the common pattern's: small departures are shrunk, large
    # ones kept. Chosen under the loss-averse criterion (PCC@M plus the mean shortfall below
    # the depth control on the inner folds): with the learned fits (6, 3.2) won 5 of 5 outer
    # folds (sessions 11 and 15); crossed with the stored fits' rule, GCV fits at (8, 1.6) won
    # 3 of 5 (session 15; see support_fit above)
    "departure_scale": 8.0,
    "departure_shrink": 1.6,
    "n_support": 0,  # seen genes whose fits the head stores (set by the trainer)
    # gradient through the context genes of the gene graph (False: they are fixed neighbours)
    "context_grad": False,
    # genes encoded per chunk (bounds memory when thousands of context genes are passed)
    "gene_chunk": 512,
    # the paper's stages (paper-notes §2.8 ablation table, §4.16). Off by default: with the
    # kernel head none adds >= 0.005 PCC@M on the inner folds of the nested CV (NDAIFE -0.000,
    # prompts -0.001, ASIG -0.001, spot graph +0.001; scripts/choose_features.py --what
    # stages, BENCHMARKS.md). Model `align-st-paper` has them all on.
    "use_ndaife": False,
    "use_text_prompts": False,
    "use_visual_prompts": False,
    "use_asig": False,
    "use_spot_graph": False,
    # Read by the TRAINER, not the model: when True the trainer shuffles gene descriptions among
    # genes (a control showing how much the text content matters). The model ignores it.
    "permute_text": False,
}

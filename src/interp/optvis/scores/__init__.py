"""Scores of attribution maps: faithfulness, robustness, complexity and randomization, in pure torch.

Every score is computed for several units at once. A *unit* is what
:func:`~interp.optvis.attribution.neuron_attributions` explains: a model, a layer name and a unit index, the unit's
value being ``acts[:, unit]`` for a Linear output and the channel's spatial mean for a conv output (an output class
is a unit of the final layer, e.g. ``dense_3`` of the MLP).
Maps are given per unit and input, shaped ``[U, N, *input_shape]`` (``U`` units, ``N`` inputs), or ``[U, N, 1, H, W]``
for maps of pixels that cover all channels. A *feature* is one element of the map: one input element when the map has
the input's shape, one pixel (all its channels at once) when the map has one channel and the input several.

* :func:`deletion` and :func:`insertion`: pixel flipping (Bach et al. 2015; Samek et al. 2017; Petsiuk et al. 2018);
* :func:`faithfulness_correlation` (Bhatt et al. 2020);
* :func:`max_sensitivity` (Yeh et al. 2019);
* :func:`sparseness`: the Gini index of the map (Chalasani et al. 2020);
* :func:`model_parameter_randomization`: cascading randomization from the top (Adebayo et al. 2018).

Each returns a small dataclass of CPU tensors (per unit and input) with a ``summary()`` of means. Random draws come
from a ``torch.Generator`` seeded with ``seed``, or are given explicitly (``subsets=``, ``noise=``), so that another
implementation (``tests/optvis/test_scores.py`` checks every score against Quantus 0.6.0) can use the same draws.

The scores live in submodules by kind (``faithfulness``, ``robustness``, ``complexity``, ``randomization``, and
``common`` for what they share); every name is importable from here.
"""

from interp.optvis.scores.common import (
    Explain,
    blurred,
    explainer,
    gini,
    pearson,
    spearman_rows,
    unit_values,
)
from interp.optvis.scores.complexity import Sparseness, sparseness
from interp.optvis.scores.faithfulness import (
    FaithfulnessCorrelation,
    PerturbationCurve,
    deletion,
    faithfulness_correlation,
    insertion,
)
from interp.optvis.scores.faithfulness import (
    _feature_ranks as _feature_ranks,  # the tests check the order of features
)
from interp.optvis.scores.randomization import (
    ParameterRandomization,
    model_parameter_randomization,
    randomizable_layers,
)
from interp.optvis.scores.robustness import Sensitivity, max_sensitivity

__all__ = [
    "Explain",
    "FaithfulnessCorrelation",
    "ParameterRandomization",
    "PerturbationCurve",
    "Sensitivity",
    "Sparseness",
    "blurred",
    "deletion",
    "explainer",
    "faithfulness_correlation",
    "gini",
    "insertion",
    "max_sensitivity",
    "model_parameter_randomization",
    "pearson",
    "randomizable_layers",
    "spearman_rows",
    "sparseness",
    "unit_values",
]

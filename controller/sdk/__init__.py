"""stopline experiments SDK for applications: which branch does this user get?

Importable without kopf or kubernetes (it needs only ``prometheus_client``)::

    from controller.sdk import Experiments

    experiments = Experiments.from_path("/etc/stopline/experiments")   # the mounted ConfigMap
    branch = experiments.expose(user.id, "GDCEurope2011", groups=user.groups)
    if branch == "enhanced":
        ...
    else:                     # "control", or None: not in the experiment → the default experience
        ...
    experiments.convert("GDCEurope2011", branch)                        # when the user converts

Published format
----------------
The controller publishes every live Experiment to a ConfigMap; its key ``experiments.json``
(``controller.experiments.hashing.PUBLISHED_KEY``) holds::

    {"experiments": [
      {"key": "GDCEurope2011", "seed": "GDCEurope2011", "rollout": 10,
       "audience": [], "branches": {"control": 0.5, "enhanced": 0.5},
       "closeOn": null, "hashVersion": 2, "enabled": true}
    ]}

``rollout`` is a percentage (0..100) of the users allowed by ``audience`` (empty: everyone;
otherwise users in at least one of the groups); ``branches`` maps name → weight in order, weights
summing to 1; ``closeOn`` names the branch everyone gets once the experiment is closed;
``hashVersion`` is GrowthBook's (1 or 2). Unknown keys are ignored. Mount the ConfigMap as a volume;
the SDK reads every ``*.json`` in the directory, so one ``<key>.json`` per experiment (each a single
config object) works too, and re-reads when the files change.

Assignment is GrowthBook-compatible (see ``controller.experiments.hashing``): a GrowthBook SDK given
the same seed, hash version, weights and coverage puts each user in the same branch.

Counters: ``stopline_experiment_exposures_total{experiment,branch}`` and
``stopline_experiment_conversions_total{experiment,branch}`` in the given ``CollectorRegistry``
(default: the global registry) — expose them with the app's usual ``/metrics`` endpoint.

Forced branches (QA)
--------------------
The published ``"force": {"users": {id: branch}, "groups": {group: branch}}`` (from the
Experiment's ``spec.force``) and a per-request override give QA a chosen branch::

    forced = parse_forced(request.cookies.get(FORCE_COOKIE))   # "GDCEurope2011=enhanced"
    branch = experiments.expose(user.id, "GDCEurope2011", groups=user.groups, forced=forced)

The app names the cookie or header (and should only honour it for staff). Forced users get a
``ForcedBranch`` (a ``str``) and are counted in ``stopline_experiment_forced_exposures_total`` /
``..._forced_conversions_total``, never in the analysis counters: a chosen branch is not a random
assignment and would bias the report.

Segments and continuous metrics
-------------------------------
``expose(..., segments={"platform": "ios"})`` / ``convert(..., segments=...)`` also count in
``stopline_experiment_segment_*_total{experiment,branch,dimension,segment}`` (the Experiment's
``metric.segments`` reads them). ``record(key, branch, value, covariate=None)``, once per exposed
user, adds to the sufficient statistics of a continuous metric (Σy, Σy² and, for CUPED, Σx, Σx²,
Σxy of a pre-period covariate) that ``metric.value`` reads.

Other languages
---------------
Beside each ``<key>.json`` the controller publishes ``<key>.growthbook.json``, a GrowthBook SDK
payload (``controller.experiments.growthbook``) with which any GrowthBook SDK assigns users exactly
as this one; this SDK ignores those files.
"""

from controller.experiments.hashing import ExperimentConfig
from controller.sdk.client import FORCE_COOKIE, Experiments, ForcedBranch, parse_forced
from controller.sdk.metrics import (
    CONVERSIONS,
    COVARIATE_SUM,
    COVARIATE_SUM_SQUARES,
    EXPOSURES,
    FORCED_CONVERSIONS,
    FORCED_EXPOSURES,
    SEGMENT_CONVERSIONS,
    SEGMENT_EXPOSURES,
    VALUE_COVARIATE_PRODUCTS,
    VALUE_SUM,
    VALUE_SUM_SQUARES,
)

__all__ = [
    "CONVERSIONS",
    "COVARIATE_SUM",
    "COVARIATE_SUM_SQUARES",
    "EXPOSURES",
    "FORCED_CONVERSIONS",
    "FORCED_EXPOSURES",
    "FORCE_COOKIE",
    "SEGMENT_CONVERSIONS",
    "SEGMENT_EXPOSURES",
    "VALUE_COVARIATE_PRODUCTS",
    "VALUE_SUM",
    "VALUE_SUM_SQUARES",
    "ExperimentConfig",
    "Experiments",
    "ForcedBranch",
    "parse_forced",
]

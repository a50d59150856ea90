"""One image -> detections as detect, evaluate and demo produce them: detect() as is, or,
when the run holds tuned post-processing (`fashion.py tune`), flags ask for some, or
`--tta` gives views, the raw pass of fashion.inference.postprocess followed by its numpy steps
(and fashion.inference.tta's views merged by mask voting).

Precedence: a flag (--score-threshold, --nms-iou, --mask-threshold, --min-area,
--overlap) > the run file's "postprocess" values (unless --postprocess none) > the
run's config (DETECTION_MIN_CONFIDENCE or --min-confidence, DETECTION_NMS_THRESHOLD,
mask threshold 0.5, no minimum area, overlaps kept).
"""
from fashion.inference import postprocess as pp
from fashion.inference import tta as tta_views
from fashion.errors import CLIError

TTA_HELP = ("test-time augmentation: comma-separated scales and/or 'flip', e.g. "
            "0.8,1.0,1.2,flip (each scale with and without a flip); bare --tta means "
            "flip; views are merged by mask voting (fashion/inference/tta.py)")


def add_tta_arg(p, help=TTA_HELP):
    """The --tta flag (detect, evaluate, tune)."""
    p.add_argument("--tta", nargs="?", const="flip", default=None, metavar="SCALES,flip",
                   help=help)


def parse_views(spec):
    """--tta's value -> views (fashion.inference.tta.parse_tta; None without TTA); a bad item is
    a CLIError naming it."""
    try:
        return tta_views.parse_tta(spec)
    except ValueError as e:
        raise CLIError(str(e)) from None


def add_postprocess_args(p):
    """--tta and the post-processing flags (detect, evaluate)."""
    add_tta_arg(p)
    g = p.add_argument_group("post-processing", "default: the values `fashion.py tune` "
                             "stored in the run file, else the run's config")
    g.add_argument("--postprocess", choices=("run", "none"), default="run",
                   help="'none' ignores the run file's tuned values")
    g.add_argument("--score-threshold", type=float, default=None)
    g.add_argument("--nms-iou", type=float, default=None,
                   help="per-class box NMS IoU (DETECTION_NMS_THRESHOLD)")
    g.add_argument("--mask-threshold", type=float, default=None,
                   help="mask probability threshold (0.5 in detect())")
    g.add_argument("--min-area", type=int, default=None,
                   help="drop masks smaller than this many pixels")
    g.add_argument("--overlap", choices=pp.OVERLAPS, default=None,
                   help="same-class masks mostly inside one another: keep both, "
                   "suppress the weaker or merge it into the stronger")


class DetectorSettings:
    """What a Detector applies on top of detect(), settled before its model is built:
    post-processing params (None: detect() as is), TTA views, the instance cap, the
    run's NMS threshold and the Config values of the raw pass (`overrides`)."""

    def __init__(self, params, views, cap, run_nms):
        self.params, self.views, self.cap, self.run_nms = params, views, cap, run_nms
        self.overrides = {}
        if params is not None:  # the raw pass: lenient NMS, room for twice the instances
            self.overrides = {
                "DETECTION_NMS_THRESHOLD": max(pp.PASS_NMS_IOU, params.get("nms_iou", run_nms)),
                "DETECTION_MAX_INSTANCES": 2 * cap}
            if "score_threshold" in params:
                self.overrides["DETECTION_MIN_CONFIDENCE"] = params["score_threshold"]


def detector_settings(stored, saved_config, tta=None, flags=None):
    """DetectorSettings from a run's stored post-processing (`stored`, {} when absent or
    ignored), its config values (`saved_config`), --tta and the post-processing flags
    (`flags`: {key: value or None})."""
    views = parse_views(tta)
    cap = int(saved_config.get("DETECTION_MAX_INSTANCES") or 100)
    nms = float(saved_config.get("DETECTION_NMS_THRESHOLD") or 0.3)
    params = {k: stored[k] for k in pp.PARAM_KEYS if k in stored}
    params.update({k: v for k, v in (flags or {}).items()
                   if k in pp.PARAM_KEYS and v is not None})
    if stored:
        cap = int(stored.get("max_instances", cap))
    _note_tuned_views(stored, tta if views else None, views)
    return DetectorSettings(params or None, views, cap, nms)


def _note_tuned_views(stored, spec, views):
    """Prints a line when the stored post-processing (`stored`, the run file's
    "postprocess") was tuned with other TTA views than this run's (`spec`, `views`)."""
    if "tta" not in stored:  # tuned before tune had --tta, or nothing stored
        return
    try:
        tuned = tta_views.parse_tta(stored["tta"])
    except ValueError:
        tuned = None
    if tuned != views:
        print(f"note: the stored post-processing was tuned "
              f"{'with --tta ' + str(stored['tta']) if tuned else 'without --tta'}; this "
              f"run {'uses --tta ' + str(spec) if views else 'has no --tta'}.")


class Detector:
    """Callable image [H, W, 3] -> detect()-style result under params and TTA views."""

    @classmethod
    def from_settings(cls, model, settings):
        """The Detector of DetectorSettings on a model built with their overrides."""
        params, cap = settings.params, settings.cap
        if params is not None:
            params = {**pp.default_params(model.config), "nms_iou": settings.run_nms,
                      **params}
        else:
            cap = int(model.config.DETECTION_MAX_INSTANCES)
        return cls(model, params, settings.views, cap)

    def __init__(self, model, params=None, views=None, max_instances=None):
        self.model = model
        self.params = params
        self.views = views
        self.max_instances = int(max_instances or model.config.DETECTION_MAX_INSTANCES)
        self.models = tta_views.ScaledModels(model) if views else None

    def describe(self):
        """One line: what is applied on top of detect()."""
        parts = []
        if self.params:
            parts.append("post-processing " + ", ".join(
                f"{k}={self.params[k]}" for k in pp.PARAM_KEYS))
        if self.views:
            scales, flip = self.views
            parts.append("TTA scales " + ",".join(f"{s:g}" for s in scales)
                         + (" x flip" if flip else ""))
        return "; ".join(parts) or "detect() as is"

    def __call__(self, image):
        if self.params is None and self.views is None:
            return self.model.detect([image])[0]
        params = self.params or pp.default_params(self.model.config)
        if self.views is None:
            return pp.finish(pp.raw_detect(self.model, image), params, self.max_instances)
        raws = tta_views.raw_views(self.models, image, *self.views)
        per_view = dict(params, score_threshold=float(
            self.model.config.DETECTION_MIN_CONFIDENCE), min_area=0, overlap="keep")
        dets = [pp.view_detections(r, per_view, self.max_instances) for r in raws]
        merged = tta_views.vote(dets, image.shape)
        return pp.densify(pp.filter_detections(merged, params, self.max_instances))
